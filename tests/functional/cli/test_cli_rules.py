"""EVS_RULES.md through the ``evs`` command (real processes), one table row per case."""

import unittest

import ddt
import pytest

from evs_driver import rules
from tests.functional.cli.support import (
    evs,
    evs_json,
    hold_status,
    manager,
    one_line_error,
    snapshot_state,
)

GiB = 1024**3
OTHER = [s for s in rules.VOLUME_STATUSES if s not in ("available", "in-use")]
NOT_REVERTIBLE = [s for s in rules.VOLUME_STATUSES if s not in ("available", "error_rollbacking")]
BUSY_SNAPSHOT = [s for s in rules.SNAPSHOT_STATUSES if s != "available"]
VOLUME_ID = "11111111-2222-3333-4444-555555555555"

# (case, statuses to set first, command, expected exit status, text in the error line)
CASES = [
    *[
        (f"2.1 snapshot of {s}", [("volume", "v", s)], "snapshot create v", 1, f"is {s}")
        for s in OTHER
    ],
    ("2.1 snapshot of in-use", [("volume", "v", "in-use")], "snapshot create v", 0, None),
    ("2.3 name 256 bytes", [], "snapshot create v --name " + "n" * 256, 1, "256 bytes"),
    ("2.3 name 256 utf-8 bytes", [], "snapshot create v --name " + "é" * 128, 1, "256 bytes"),
    ("2.3 name 255 bytes", [], "snapshot create v --name " + "中" * 85, 0, None),
    ("2.3 reserved prefix", [], "snapshot create v --name autobk_snapshot_x", 1, "reserved"),
    ("2.3 description", [], "snapshot create v --description " + "d" * 256, 1, "description"),
    ("3.1 other volume's snapshot", [], "volume revert v --snapshot ws", 1, "own snapshots"),
    *[
        (
            f"3.2 revert {s} volume",
            [("volume", "v", s)],
            "volume revert v --snapshot s",
            1,
            f"is {s}",
        )
        for s in NOT_REVERTIBLE
    ],
    (
        "3.2 revert error_rollbacking",
        [("volume", "v", "error_rollbacking")],
        "volume revert v --snapshot s",
        0,
        None,
    ),
    *[
        (
            f"3.2 revert to {s} snapshot",
            [("snapshot", "s", s)],
            "volume revert v --snapshot s",
            1,
            f"is {s}",
        )
        for s in BUSY_SNAPSHOT
    ],
    (
        "4.1 smaller than snapshot",
        [],
        "volume create --snapshot s --size 1",
        1,
        "smaller than the snapshot",
    ),
    (
        "4.1 from unavailable snapshot",
        [("snapshot", "s", "error")],
        "volume create --snapshot s",
        1,
        "is error",
    ),
    (
        "4.5 clone smaller than source",
        [],
        "volume create --source-volume v --size 1",
        1,
        "smaller than the source",
    ),
    *[
        (f"5.1 delete {s} snapshot", [("snapshot", "s", s)], "snapshot delete s", 1, f"is {s}")
        for s in ("creating", "deleting", "rollbacking")
    ],
    ("5.1 delete error snapshot", [("snapshot", "s", "error")], "snapshot delete s", 0, None),
    # A delete that failed (a full file system, say) is retried with delete.
    (
        "5.1 delete error_deleting snapshot",
        [("snapshot", "s", "error_deleting")],
        "snapshot delete s",
        0,
        None,
    ),
    ("5.2 volume with snapshots", [], "volume delete v", 1, "has 1 snapshot(s)"),
    ("5.3 in-use volume", [("volume", "v", "in-use")], "volume delete v --cascade", 1, "is in-use"),
    ("5.3 already gone", [], f"volume delete {VOLUME_ID}", 0, None),
    ("5.3 snapshot already gone", [], f"snapshot delete {VOLUME_ID}", 0, None),
    ("6 same size", [], "volume extend v --size 2", 1, "must be larger"),
    ("6 shrink", [], "volume extend v --size 1", 1, "must be larger"),
    *[
        (f"6 extend {s}", [("volume", "v", s)], "volume extend v --size 3", 1, f"is {s}")
        for s in rules.VOLUME_STATUSES
        if s != "available"
    ],
    ("8 over-subscription", [], "volume create --size 5000", 1, "max_over_subscription_ratio"),
]


@ddt.ddt
class TestRuleTable(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.state = tmp_path / "state"
        m = manager(self.state)
        try:
            m.create_volume(2, name="v")
            m.create_snapshot("v", name="s")
            m.create_volume(1, name="w")
            m.create_snapshot("w", name="ws")
        finally:
            m.close()

    @ddt.idata(CASES)
    @ddt.unpack
    def test_rule(self, case, statuses, command, code, text):
        # This manager stays open: the statuses it sets belong to a live operation, which
        # the command's start-up recovery must leave alone.
        m = manager(self.state)
        try:
            for kind, ref, status in statuses:
                hold_status(m, kind, ref, status)
            before = snapshot_state(self.state, m)
            result = evs(self.state, *command.split(" "))
            if code == 0:
                assert result.returncode == 0, (case, result.stderr)
                return
            line = one_line_error(result, code)
            assert line.startswith("evs: error: ") and text in line, (case, line)
            assert snapshot_state(self.state, m) == before, case
        finally:
            m.close()


def test_snapshot_limit_from_config(tmp_path):
    state = tmp_path / "state"
    conf = tmp_path / "evs.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {state}\nmax_snapshots_per_volume = 2\n")
    run = ("--config-file", conf)
    evs_json(state, *run, "volume", "create", "--size", "1", "--name", "v")
    evs_json(state, *run, "snapshot", "create", "v")
    evs_json(state, *run, "snapshot", "create", "v")
    line = one_line_error(evs(state, *run, "snapshot", "create", "v"))
    assert "already has 2 snapshots" in line and "is 2" in line


def test_revert_any_snapshot_repeatedly_with_data(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    images = {}
    for tag in ("one", "two", "three"):
        image = tmp_path / f"{tag}.raw"
        image.write_bytes(tag.encode() * 1000)
        evs_json(state, "volume", "import", "v", image)
        images[tag] = image.read_bytes()
        evs_json(state, "snapshot", "create", "v", "--name", tag)
    evs_json(state, "volume", "extend", "v", "--size", "2")
    out = tmp_path / "out.raw"
    for tag in ("one", "three", "one", "two"):
        evs_json(state, "volume", "revert", "v", "--snapshot", tag)
        evs_json(state, "volume", "export", "v", out, "--force")  # over the last one
        with open(out, "rb") as f:
            assert f.read(len(images[tag]) + 10) == images[tag] + bytes(10)
        assert out.stat().st_size == 2 * GiB  # 3.4: the size is kept
    snaps = evs_json(state, "snapshot", "list")
    assert [s["name"] for s in snaps] == ["one", "two", "three"]
    assert {s["status"] for s in snaps} == {"available"} and {s["size"] for s in snaps} == {1}


def test_full_clone_and_cascade(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    image = tmp_path / "a.raw"
    image.write_bytes(b"a" * 70000)
    evs_json(state, "volume", "import", "v", image)
    evs_json(state, "snapshot", "create", "v", "--name", "s")
    full = evs_json(state, "volume", "create", "--snapshot", "s", "--full-clone", "--name", "f")
    linked = evs_json(state, "volume", "create", "--snapshot", "s", "--size", "2", "--name", "l")
    assert (full["progress"], full["full_clone"], linked["size"]) == (100, True, 2)
    assert evs(state, "volume", "delete", "v", "--cascade").returncode == 0
    names = sorted(v["name"] for v in evs_json(state, "volume", "list"))
    assert names == ["f", "l"] and evs_json(state, "snapshot", "list") == []
    for name in ("f", "l"):
        out = tmp_path / f"{name}.raw"
        evs_json(state, "volume", "export", name, out)
        with open(out, "rb") as f:
            assert f.read(70000) == image.read_bytes()
    assert evs(state, "pool", "check").returncode == 0
