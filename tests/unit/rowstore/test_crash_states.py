"""Power cuts, simulated: every crash state of hypothesis-made workloads opens clean and intact.

A workload (writes, partial writes that make overlays, discards, flushes, snapshots and group
snapshots, clones, reverts and group reverts, deletes, extends, collections) runs on a pool
whose I/O seam records every write and sync; then crash states are built from the log (see
``crashstates``) and each is opened with the real engine and checked (see
``crashworkload.verify``). ``EVS_CRASH_STATES`` sets how many states the main test checks
(default 2000); the planted-bug tests prove the checks fail when the engine breaks its crash
rules.
"""

import os
import random
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from evs_driver.rowstore import metastore
from evs_driver.rowstore.chunkstore import ChunkStore
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.metastore import MetaStore
from evs_driver.rowstore.transaction import Transaction
from tests.unit.rowstore.crashworkload import Workload, verify

STATES = int(os.environ.get("EVS_CRASH_STATES", "2000"))
STATES_PER_WORKLOAD = 50

_index = st.integers(0, 7)
_write = st.tuples(st.just("write"), _index, st.integers(0, 80), st.integers(1, 16))
_small_write = st.tuples(st.just("write"), _index, st.integers(0, 80), st.integers(1, 3))
_chunk_discard = st.tuples(  # whole chunks: frees them
    st.just("discard"), _index, st.integers(0, 9).map(lambda n: 8 * n), st.sampled_from([8, 16])
)
OPERATIONS = st.one_of(
    _write,
    _write,
    _small_write,  # after a snapshot: an overlay
    _small_write,
    _chunk_discard,
    st.tuples(st.just("discard"), _index, st.integers(0, 80), st.integers(1, 20)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("snapshot"), _index),
    st.tuples(st.just("clone"), _index, st.integers(0, 16)),
    st.tuples(st.just("revert"), _index),
    st.tuples(st.just("delete"), _index),
    st.tuples(st.just("extend"), _index, st.integers(1, 24)),
    st.tuples(st.just("collect")),
    st.tuples(st.just("create")),
)
WORKLOADS = st.lists(OPERATIONS, min_size=10, max_size=40).map(lambda ops: [("create",), *ops])
_GROUP = st.one_of(
    st.tuples(st.just("group_snapshot"), _index), st.tuples(st.just("group_revert"), _index)
)
GROUP_WORKLOADS = st.lists(st.one_of(OPERATIONS, _GROUP, _GROUP), min_size=10, max_size=40).map(
    lambda ops: [("create",), ("create",), *ops]
)
GROUP_STATES = int(os.environ.get("EVS_CRASH_STATES", "2000")) // 4


@pytest.fixture(autouse=True)
def small_log(monkeypatch):
    """Checkpoint the metadata log every 64 KiB, so crash states also fall in checkpoints
    and in the log restarts after them."""
    monkeypatch.setattr(metastore, "CHECKPOINT_BYTES", 64 << 10)


def check_crash_states(tmp_path, operations, states: int) -> int:
    """Run ``operations`` recorded, then check ``states`` crash states; return how many."""
    directory = tempfile.mkdtemp(dir=tmp_path)
    try:
        workload = Workload(directory)
        try:
            for operation in operations:
                workload.run(operation)
        finally:
            workload.close()
        events = workload.disk.events
        rng = random.Random(repr(operations))
        # Just after each sync, with nothing later on the disk, is where the most is at
        # stake; the other states fall anywhere, with any subset or prefix of later writes.
        boundaries = [i + 1 for i, event in enumerate(events) if event[0] == "sync"]
        rng.shuffle(boundaries)
        for n in range(states):
            if n < len(boundaries) and n % 3 != 2:
                k, mode = boundaries[n], "synced"
            else:
                k, mode = rng.randrange(len(events) + 1), "any"
            verify(workload, k, rng, os.path.join(directory, "state"), mode)
    finally:
        shutil.rmtree(directory)
    return states


def _run(tmp_path, total: int, shrink: bool = True, workloads=WORKLOADS) -> int:
    checked = []

    @settings(
        max_examples=-(-total // STATES_PER_WORKLOAD),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(workloads)
    def run(operations):
        checked.append(check_crash_states(tmp_path, operations, STATES_PER_WORKLOAD))

    run()
    return sum(checked)


def test_every_crash_state_keeps_what_was_acknowledged(tmp_path):
    checked = _run(tmp_path, STATES)
    print(f"{checked} crash states checked")
    assert checked >= STATES


def test_group_snapshots_and_reverts_are_all_or_nothing_in_every_crash_state(tmp_path):
    """A group snapshot or revert is one transaction: a crash state shows every member's
    snapshot (or reverted content) or none (``verify`` allows only whole device sets)."""
    checked = _run(tmp_path, GROUP_STATES, workloads=GROUP_WORKLOADS)
    assert checked >= GROUP_STATES


@pytest.fixture
def data_synced_after_the_metadata(monkeypatch):
    """Planted bug: the commit maps chunks before their data is synced (the data file is
    synced only once the metadata is durable)."""
    unsynced = []
    real_data_sync, real_meta_sync = ChunkStore.sync, MetaStore.sync
    monkeypatch.setattr(ChunkStore, "sync", lambda store: unsynced.append(store))

    def metadata_then_data(meta):
        real_meta_sync(meta)
        while unsynced:
            real_data_sync(unsynced.pop())

    monkeypatch.setattr(MetaStore, "sync", metadata_then_data)


@pytest.fixture
def freed_chunks_reused_at_once(monkeypatch):
    """Planted bug: a chunk freed in a transaction is reused before that transaction commits."""
    real_drop = DataMap.drop

    def drop_and_reuse(datamap, chunk):
        real_drop(datamap, chunk)
        datamap.reuse_freed()

    monkeypatch.setattr(DataMap, "drop", drop_and_reuse)


@pytest.fixture
def clean_mark_kept_while_allocating(monkeypatch):
    """Planted bug: chunks are allocated and written while the pool is still marked clean."""
    monkeypatch.setattr(Transaction, "before_allocating", lambda transaction: None)


@pytest.mark.parametrize(
    "bug",
    [
        "data_synced_after_the_metadata",
        "freed_chunks_reused_at_once",
        "clean_mark_kept_while_allocating",
    ],
)
def test_the_crash_states_catch_a_planted_bug(tmp_path, request, bug):
    request.getfixturevalue(bug)
    with pytest.raises(AssertionError):
        _run(tmp_path, 30 * STATES_PER_WORKLOAD, shrink=False)
