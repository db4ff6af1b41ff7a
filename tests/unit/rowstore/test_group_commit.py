"""Group commit: concurrent flushes share syncs, and every flush still covers every write
that returned before it, in every crash state.

A flush (thread 0) is held inside its data sync; meanwhile the other threads write (in place,
and into new chunks that change metadata) and flush. They must wait for the next round,
which covers them all: two rounds for all flushes, one metadata commit, and in the crash
state at each flush's return (the synced files, and others with any later writes) that
flush's write is there. The seam's syncs are logged when they *start*, so a write that
returned during a sync counts as covered only by a later one.
"""

import random
import threading

import pytest

from evs_driver.rowstore import Pool
from evs_driver.rowstore.disk import Disk
from evs_driver.rowstore.groupcommit import GroupCommit
from tests.unit.rowstore.conftest import CHUNK, wait_for
from tests.unit.rowstore.crashstates import RecordingDisk, crash_state, write_state

FLUSHERS = 8


class GatedDisk(RecordingDisk):
    """A recording disk whose next data sync, once ``hold`` is called, waits for ``release``
    (fault injection of a slow sync: no real disk is slow on cue)."""

    def __init__(self):
        super().__init__()
        self._gate: threading.Event | None = None
        self.held = threading.Event()
        self.completed = 0  # data syncs that returned

    def hold(self) -> threading.Event:
        self._gate = threading.Event()
        return self._gate

    def fdatasync(self, fd: int) -> None:
        self._log("sync", self._names[fd])  # at its start: later writes are not covered
        gate, self._gate = self._gate, None
        if gate is not None:
            self.held.set()
            assert gate.wait(30), "the held sync was never released"
        Disk.fdatasync(self, fd)
        self.completed += 1


def _payload(index: int) -> bytes:
    return f"flusher {index};".encode().ljust(512, b".")


def _concurrent_flushes(tmp_path) -> tuple[GatedDisk, Pool, int]:
    """Run the scenario; return the disk with its log, the (open) pool and its rounds."""
    path = str(tmp_path / "p")
    Pool.create(path, 64 * CHUNK, CHUNK, node_bits=2, background=False).close()
    disk = GatedDisk()
    pool = Pool.open(path, background=False, disk=disk)
    pool.create_volume("v", 16 * CHUNK)
    for index in range(0, FLUSHERS, 2):  # even flushers overwrite in place, odd ones allocate
        pool.write("v", index * CHUNK, bytes(CHUNK))
    pool.flush()
    pool.write("v", 0, bytes(CHUNK))  # (an overwrite after remapping ones: no longer remapping)
    pool.flush()  # so flush 0's round has no metadata to commit: one plain data sync
    disk.start(path)
    rounds_before = pool._group._started
    errors = []

    def flusher(index: int) -> None:
        try:
            pool.write("v", index * CHUNK, _payload(index))
            pool.flush()
            disk.ack(index)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    release = disk.hold()
    first = threading.Thread(target=flusher, args=(0,))
    first.start()
    assert disk.held.wait(30)  # flush 0's round is in its data sync
    others = [threading.Thread(target=flusher, args=(i,)) for i in range(1, FLUSHERS)]
    for thread in others:
        thread.start()
    wait_for(lambda: pool._group.waiting == FLUSHERS - 1, "the other flushes to queue")
    release.set()
    for thread in [first, *others]:
        thread.join(30)
    disk.stop()
    assert not errors, errors
    return disk, pool, pool._group._started - rounds_before


def test_concurrent_flushes_share_one_round_and_each_is_durable(tmp_path):
    disk, pool, rounds = _concurrent_flushes(tmp_path)
    syncs = [event for event in disk.events if event[0] == "sync"]
    data_syncs = syncs.count(("sync", "data"))
    log_syncs = syncs.count(("sync", "metadata.sqlite-wal"))
    # Flush 0's round (a data sync: nothing to commit), then one round for the other seven.
    assert rounds == 2
    assert data_syncs <= 3 < FLUSHERS and log_syncs == 1, syncs
    pool.close()
    rng = random.Random(13)
    state = str(tmp_path / "state")
    for index in range(FLUSHERS):
        acked = disk.events.index(("ack", index)) + 1
        for mode in ("synced", "any", "any"):
            write_state(crash_state(disk.base, disk.events, acked, rng, mode), state)
            with Pool.open(state, background=False) as crashed:
                got = crashed.read("v", index * CHUNK, 512)
                assert got == _payload(index), (index, mode, got[:20])
                assert crashed.check().clean


def test_a_flush_joining_a_running_round_is_caught(tmp_path, monkeypatch):
    """Planted bug: a flush arriving during a round is answered by that round, which began
    before its write returned; the crash state at its return then lacks the write."""
    monkeypatch.setattr(GroupCommit, "_needed", lambda group: group._started + (not group._running))
    disk, pool, _rounds = _concurrent_flushes(tmp_path)
    pool.close()
    state = str(tmp_path / "state")
    lost = []
    for index in range(1, FLUSHERS):
        acked = disk.events.index(("ack", index)) + 1
        images = crash_state(disk.base, disk.events, acked, random.Random(0), "synced")
        write_state(images, state)
        with Pool.open(state, background=False) as crashed:
            if not crashed.exists("v") or crashed.read("v", index * CHUNK, 512) != _payload(index):
                lost.append(index)
    assert lost


def test_a_failed_round_fails_its_caller_and_the_waiters_run_their_own():
    calls, held, release = [], threading.Event(), threading.Event()

    def round_():
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            held.set()
            assert release.wait(30)
            raise OSError(5, "injected: the sync failed")

    group = GroupCommit(round_)
    outcomes = {}

    def flusher(name):
        try:
            group.flush()
            outcomes[name] = "ok"
        except OSError:
            outcomes[name] = "failed"

    first = threading.Thread(target=flusher, args=("first",), name="first")
    first.start()
    assert held.wait(30)
    waiters = [threading.Thread(target=flusher, args=(f"w{i}",), name=f"w{i}") for i in range(3)]
    for thread in waiters:
        thread.start()
    wait_for(lambda: group.waiting == 3, "the waiters to queue")
    release.set()
    for thread in [first, *waiters]:
        thread.join(30)
    # The failure is the first caller's alone; one more round serves all three waiters.
    assert outcomes == {"first": "failed", "w0": "ok", "w1": "ok", "w2": "ok"}
    assert len(calls) == 2


@pytest.mark.parametrize("flushes", [1, 3])
def test_a_flush_with_nothing_running_runs_its_own_round(flushes):
    calls = []
    group = GroupCommit(lambda: calls.append(1))
    for _ in range(flushes):
        group.flush()
    assert len(calls) == flushes


def test_the_pool_flushes_through_its_group(tmp_path):
    with Pool.create(str(tmp_path / "p"), 64 * CHUNK, CHUNK, background=False) as pool:
        pool.create_volume("v", CHUNK)
        pool.write("v", 0, b"x" * 512, fua=True)
        assert pool._group._durable == 1  # the FUA write's flush was a round


class _CountedLock:
    """The data file's sync lock, counting who asked for it (to know a caller is waiting)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.asked = 0

    def __enter__(self):
        self.asked += 1
        self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()


def test_a_data_sync_finding_nothing_new_waits_for_the_sync_under_way(tmp_path):
    """A write that returned before a sync began is durable only once that sync returns, so
    a second sync (e.g. a flush beside a control operation's commit) must wait for it."""
    path = str(tmp_path / "p")
    Pool.create(path, 64 * CHUNK, CHUNK, background=False).close()
    disk = GatedDisk()
    with Pool.open(path, background=False, disk=disk) as pool:
        pool.create_volume("v", CHUNK)
        pool.write("v", 0, b"x" * CHUNK)
        chunks = pool._chunks
        chunks._syncing = counted = _CountedLock()
        seen = []  # the data syncs completed when the second sync returned
        release = disk.hold()
        first = threading.Thread(target=chunks.sync)
        second = threading.Thread(target=lambda: (chunks.sync(), seen.append(disk.completed)))
        first.start()
        assert disk.held.wait(30)
        before = disk.completed
        second.start()
        wait_for(lambda: counted.asked == 2, "the second sync to ask")
        assert seen == []
        release.set()
        first.join(30), second.join(30)
        assert seen == [before + 1]  # it returned after the held sync, and ran none itself
