"""Revert on real LVM: any snapshot, any order, every snapshot kept, safe across a crash."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from evs_driver import exception
from evs_driver.backends.lvm.naming import REVERT_PREFIX
from tests.lvm_guest import guestenv

pytestmark = pytest.mark.skipif(not guestenv.in_guest(), reason=guestenv.SKIP_REASON)

MiB = 1 << 20
SIZE = 16 * MiB


def fill(tag: str) -> bytes:
    return (tag.encode() * 4096)[:4096]


def write(backend, device_id, offset, payload):
    with backend.open_device(device_id, writable=True) as dev:
        dev.write(offset, payload)


def read(backend, device_id, offset, length=4096):
    with backend.open_device(device_id, writable=False) as dev:
        return dev.read(offset, length)


def make_history(backend, new_id, count=3):
    """A volume with ``count`` snapshots, generation i at offset 0, then extended."""
    vol = new_id()
    snaps = [new_id() for _ in range(count)]
    backend.create_volume(vol, SIZE)
    for i, snap in enumerate(snaps):
        write(backend, vol, 0, fill(f"gen{i}"))
        write(backend, vol, (i + 1) * MiB, fill(f"only{i}"))
        backend.create_snapshot(vol, snap)
    write(backend, vol, 0, fill("current"))
    backend.extend_volume(vol, 2 * SIZE)
    return vol, snaps


def assert_snapshots_intact(backend, snaps):
    for i, snap in enumerate(snaps):
        assert backend.exists(snap)
        assert read(backend, snap, 0) == fill(f"gen{i}")


def test_oldest_newest_oldest_leaves_no_trace(lvm_backend, lvm_vg, new_id):
    vol, snaps = make_history(lvm_backend, new_id)
    for target in (0, 2, 0):
        lvm_backend.revert_to_snapshot(vol, snaps[target])
        assert read(lvm_backend, vol, 0) == fill(f"gen{target}")
        for i in range(3):  # data written after the target snapshot is gone
            expected = fill(f"only{i}") if i <= target else bytes(4096)
            assert read(lvm_backend, vol, (i + 1) * MiB) == expected
        assert_snapshots_intact(lvm_backend, snaps)
    names = guestenv.lv_names(lvm_vg)
    assert not [n for n in names if n.startswith(REVERT_PREFIX)]
    tags = guestenv.lvm("lvs", "--noheadings", "-o", "lv_tags", f"{lvm_vg}/volume-{vol}")
    assert tags.strip() == ""
    assert lvm_backend.check().clean
    lvm_backend.recover()  # nothing pending: changes nothing
    assert guestenv.lv_names(lvm_vg) == names


def test_revert_to_another_volumes_snapshot_is_refused(lvm_backend, new_id):
    vol, snaps = make_history(lvm_backend, new_id, count=1)
    other = new_id()
    lvm_backend.create_volume(other, SIZE)
    with pytest.raises(exception.InvalidOperation, match="not of"):
        lvm_backend.revert_to_snapshot(other, snaps[0])
    assert read(lvm_backend, vol, 0) == fill("current")
    assert read(lvm_backend, other, 0) == bytes(4096)


CHILD = textwrap.dedent(
    """
    import sys
    from tests.lvm_guest import guestenv
    backend = guestenv.make_backend(sys.argv[1], "pool")
    backend.setup()
    backend.revert_to_snapshot(sys.argv[2], sys.argv[3])
    """
)

# (fault point, content after recover): before the volume's LV is removed recover undoes
# the revert; from then on it finishes it.
CRASH_POINTS = [
    ("lvm_thin.revert.snapshotted", "current"),
    ("lvm_thin.revert.extended", "current"),
    ("lvm_thin.revert.removed", "gen0"),
    ("lvm_thin.revert.renamed", "gen0"),
]


@pytest.mark.parametrize(("point", "outcome"), CRASH_POINTS)
def test_revert_killed_at_each_step_is_settled_by_recover(
    lvm_backend, lvm_vg, new_id, point, outcome
):
    """A real crash: the reverting process is SIGKILLed (evs_driver.faults) at ``point``."""
    vol, snaps = make_history(lvm_backend, new_id, count=2)
    env = {**os.environ, "EVS_FAULT_INJECT": f"{point}=kill"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, lvm_vg, vol, snaps[0]], env=env, capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert not lvm_backend.check().clean  # the interrupted revert is visible

    restarted = guestenv.make_backend(lvm_vg, "pool")
    restarted.setup()
    restarted.recover()
    assert restarted.check().clean
    assert read(restarted, vol, 0) == fill(outcome)
    with restarted.open_device(vol, writable=True) as dev:
        assert dev.size == 2 * SIZE
    assert_snapshots_intact(restarted, snaps)
    assert not [n for n in guestenv.lv_names(lvm_vg) if n.startswith(REVERT_PREFIX)]
    restarted.revert_to_snapshot(vol, snaps[1])  # and the volume reverts again normally
    assert read(restarted, vol, 0) == fill("gen1")


def test_deleting_a_volume_whose_revert_crashed_keeps_it_deleted(lvm_backend, lvm_vg, new_id):
    vol, snaps = make_history(lvm_backend, new_id, count=1)
    env = {**os.environ, "EVS_FAULT_INJECT": "lvm_thin.revert.removed=kill"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, lvm_vg, vol, snaps[0]], env=env, capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    lvm_backend.delete_volume(vol)
    lvm_backend.recover()
    assert not lvm_backend.exists(vol)
    assert lvm_backend.exists(snaps[0])
    assert lvm_backend.check().clean


@pytest.mark.parametrize(
    ("point", "outcome"),
    [("lvm_thin.revert.snapshotted", "current"), ("lvm_thin.revert.removed", "gen0")],
)
def test_revert_failing_mid_way_settles_at_once(
    lvm_backend, lvm_vg, new_id, monkeypatch, point, outcome
):
    """An error (injected: LVM cannot be made to fail on cue) is undone or finished at once."""
    vol, snaps = make_history(lvm_backend, new_id, count=2)
    monkeypatch.setenv("EVS_FAULT_INJECT", f"{point}=raise")
    with pytest.raises(exception.BackendError, match="injected"):
        lvm_backend.revert_to_snapshot(vol, snaps[0])
    monkeypatch.delenv("EVS_FAULT_INJECT")
    assert lvm_backend.check().clean
    assert read(lvm_backend, vol, 0) == fill(outcome)
    assert_snapshots_intact(lvm_backend, snaps)
