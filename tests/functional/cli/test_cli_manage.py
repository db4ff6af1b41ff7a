"""``evs volume manage`` and friends on a backend that cannot adopt devices (``local``).

Real ``evs`` processes: every manage/unmanage call is refused with one line, and a refused
unmanage leaves the volume and its snapshots in the catalog (it once forgot the volume
before the backend refused, orphaning its data). The rbd side is tests/rbd/test_rbd_cli_manage.py.
"""

import pytest

from tests.functional.cli.support import evs, evs_json, one_line_error, snapshot_state

REFUSAL = "backend local cannot manage or unmanage existing devices"


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def test_unmanage_refused_by_local_forgets_nothing(state):
    volume = evs_json(state, "volume", "create", "--size", "1", "--name", "keep")
    evs_json(state, "snapshot", "create", "keep", "--name", "s1")
    before = snapshot_state(state)
    assert REFUSAL in one_line_error(evs(state, "snapshot", "unmanage", "s1"))
    assert REFUSAL in one_line_error(evs(state, "volume", "unmanage", "keep"))
    assert snapshot_state(state) == before
    assert evs_json(state, "volume", "show", volume["id"])["status"] == "available"


@pytest.mark.parametrize(
    "args",
    [("volume", "manage", "some-device"), ("volume", "manage", "--by-id", "1234")],
)
def test_manage_refused_by_local_adds_nothing(state, args):
    evs_json(state, "volume", "create", "--size", "1", "--name", "other")
    before = snapshot_state(state)
    assert REFUSAL in one_line_error(evs(state, *args))
    assert snapshot_state(state) == before


def test_manageable_lists_nothing_on_local(state):
    evs_json(state, "volume", "create", "--size", "1")
    assert evs_json(state, "volume", "manageable") == []


def test_manage_names_follow_the_create_rules(state):
    evs_json(state, "volume", "create", "--size", "1")
    line = one_line_error(
        evs(state, "volume", "manage", "dev", "--name", "0b5e6c1a-1111-4222-8333-944455556666")
    )
    assert "looks like an id" in line
