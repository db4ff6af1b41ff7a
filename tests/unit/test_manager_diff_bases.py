"""Which snapshots a served device may be compared with (NBD's ``evs:changed-since:``)."""

import pytest

from evs_driver.manager import VolumeManager
from tests.unit.test_conf import make_conf


@pytest.fixture
def manager(tmp_path):
    m = VolumeManager(make_conf(str(tmp_path)))
    yield m
    m.close()


def test_the_other_available_snapshots_of_the_same_volume(manager):
    volume = manager.create_volume(1, name="v")
    monday = manager.create_snapshot("v", name="monday")
    unnamed = manager.create_snapshot("v")
    going = manager.create_snapshot("v", name="going")
    with manager.catalog.transaction() as txn:
        txn.move_status(going, "deleting", expect=("available",))
    manager.create_volume(1, name="other")
    other = manager.create_snapshot("other", name="elsewhere")
    assert sorted(manager.diff_bases(volume.id)) == sorted(
        [(monday.id, "monday"), (unnamed.id, None)]
    )
    assert manager.diff_bases(monday.id) == [(unnamed.id, None)]  # not itself
    assert manager.diff_bases(other.id) == []
    assert manager.diff_bases("no-such-device") == []
