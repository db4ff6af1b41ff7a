"""Rule 7: statuses move by compare-and-set, and a restart resolves what a crash left behind."""

import threading
import unittest

import ddt
import pytest

from evs_driver import exception
from evs_driver.locking import OwnerToken
from tests.unit.test_manager_rules import CHUNK, block, new_manager, read, write

DEAD = "0" * 32  # an owner token nobody holds: its manager is gone


def crash_leaves(m, kind: str, ref: str, status: str, **task) -> None:
    """Put a row in the state a crashed manager leaves: intermediate status, dead owner."""
    with m.catalog.transaction() as txn:
        rec = txn.volume(ref) if kind == "volume" else txn.snapshot(ref)
        txn.move_status(rec, status, expect=(rec.status,), task={"op": "x", "owner": DEAD, **task})


@ddt.ddt
class TestRecovery(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, tmp_path):
        self.tmp_path = tmp_path
        self.m = new_manager(tmp_path)
        self.vol = self.m.create_volume(1, name="v")
        write(self.m, "v", 0, block("a"))
        self.snap = self.m.create_snapshot("v", name="s")
        yield
        self.m.close()

    def restart(self):
        self.m.close()
        self.m = new_manager(self.tmp_path)
        return self.m

    def test_creating_volume_with_device_becomes_available(self):
        crash_leaves(self.m, "volume", self.vol.id, "creating")
        assert self.restart().get_volume("v").status == "available"

    def test_creating_volume_without_device_becomes_error(self):
        with self.m.lock("local"):
            self.m.drivers["local"].backend.delete_volume(self.vol.id)
        self.m.delete_snapshot("s")
        crash_leaves(self.m, "volume", self.vol.id, "creating")
        assert self.restart().get_volume("v").status == "error"

    def test_half_done_full_clone_becomes_error(self):
        crash_leaves(self.m, "volume", self.vol.id, "creating", full_clone=True)
        assert self.restart().get_volume("v").status == "error"

    @ddt.data((True, "available", 2), (False, "error_extending", 1))
    @ddt.unpack
    def test_extending(self, done, status, size):
        if done:
            with self.m.lock("local"):
                self.m.drivers["local"].extend_volume(self.vol, 2)
        crash_leaves(self.m, "volume", self.vol.id, "extending", new_size=2)
        vol = self.restart().get_volume("v")
        assert (vol.status, vol.size) == (status, size)

    def test_deleting_volume_is_finished(self):
        self.m.delete_snapshot("s")
        crash_leaves(self.m, "volume", self.vol.id, "deleting")
        m = self.restart()
        assert m.list_volumes() == []
        assert m.check() == {"local": []}

    def test_rollbacking_marks_volume_error_rollbacking_snapshot_available(self):
        crash_leaves(self.m, "volume", self.vol.id, "rollbacking")
        crash_leaves(self.m, "snapshot", self.snap.id, "rollbacking")
        m = self.restart()
        assert m.get_volume("v").status == "error_rollbacking"
        assert m.get_snapshot("s").status == "available"
        m.revert_volume("v", "s")  # and the user can revert again
        assert read(m, "volume", "v", 0, CHUNK) == block("a")

    @ddt.data((True, "available"), (False, "error"))
    @ddt.unpack
    def test_creating_snapshot(self, exists, status):
        if not exists:
            with self.m.lock("local"):
                self.m.drivers["local"].delete_snapshot(self.snap)
        crash_leaves(self.m, "snapshot", self.snap.id, "creating")
        assert self.restart().get_snapshot("s").status == status

    def test_deleting_snapshot_is_finished(self):
        crash_leaves(self.m, "snapshot", self.snap.id, "deleting")
        m = self.restart()
        assert m.list_snapshots() == []
        assert m.check() == {"local": []}

    def test_live_owner_is_left_alone(self):
        """A concurrent manager's operation in flight is not a crash."""
        other = OwnerToken(str(self.tmp_path / "state" / "owners"))
        try:
            with self.m.catalog.transaction() as txn:
                task = {"owner": other.token}
                txn.move_status(self.vol, "extending", expect=(self.vol.status,), task=task)
            m = self.restart()
            assert m.get_volume("v").status == "extending"
            assert any("extending" in p for p in m.check()["local"])
        finally:
            other.close()
        assert self.restart().get_volume("v").status == "error_extending"

    def test_check_reports_missing_device(self):
        with self.m.lock("local"):
            self.m.drivers["local"].backend.delete_snapshot(self.snap.id)
        problems = self.m.check()["local"]
        assert problems == [f"snapshot {self.snap.id} (available) has no backend device"]


def test_racing_threads_exactly_one_wins(tmp_path):
    """Two requests on one volume at once: one wins, the other gets a clear status error."""
    m = new_manager(tmp_path)
    try:
        m.create_volume(1, name="v")
        m.create_snapshot("v", name="s")
        barrier = threading.Barrier(2)
        results = {}

        def run(name, call):
            barrier.wait()
            try:
                call()
                results[name] = "ok"
            except exception.EVSError as exc:
                results[name] = exc

        threads = [
            threading.Thread(target=run, args=("revert", lambda: m.revert_volume("v", "s"))),
            threading.Thread(target=run, args=("extend", lambda: m.extend_volume("v", 2))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes = sorted(type(r).__name__ if r != "ok" else "ok" for r in results.values())
        assert outcomes in (["InvalidStatus", "ok"], ["ok", "ok"])
        assert m.get_volume("v").status == "available"
        assert m.check() == {"local": []}
    finally:
        m.close()


def test_snapshot_creation_blocks_extend_and_revert(tmp_path):
    """Fault injection: the probe runs while a snapshot is still 'creating'."""
    m = new_manager(tmp_path)
    try:
        m.create_volume(1, name="v")
        m.create_snapshot("v", name="old")
        seen = []

        def probe(name):
            if name == "create_snapshot.after_backend":
                for call in (lambda: m.extend_volume("v", 2), lambda: m.revert_volume("v", "old")):
                    with pytest.raises(exception.ConcurrentOperation) as err:
                        call()
                    seen.append(err.value.msg)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("evs_driver.faults.point", probe)
            m.create_snapshot("v")
        assert len(seen) == 2 and "being created" in seen[0]
        assert m.get_volume("v").status == "available"
    finally:
        m.close()
