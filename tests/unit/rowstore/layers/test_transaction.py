"""The transaction alone: it stores every owner's changes, data first, and reuses freed
space only after the commit; a failed control operation leaves no trace."""

import contextlib
import threading

import pytest

from evs_driver import exception
from evs_driver.rowstore.chunkstore import ChunkStore, new_pool_id
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.devicetable import VOLUME, DeviceTable
from evs_driver.rowstore.geometry import Geometry
from evs_driver.rowstore.metastore import MetaStore
from evs_driver.rowstore.nodes import NodeStore
from evs_driver.rowstore.overlays import Overlays
from evs_driver.rowstore.spacemap import SpaceMap
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.transaction import Transaction, committed_node_space

CHUNK = 4096


@pytest.fixture
def layers(meta, tmp_path):
    data_path = str(tmp_path / "data")
    ChunkStore.create(data_path, CHUNK, 64, new_pool_id())
    chunks = ChunkStore(data_path, CHUNK, 64, str(tmp_path))
    data = SpaceMap("data", {}, 0, 64)
    nodes = NodeStore(meta.node, committed_node_space(meta, "nodes", set()), data, set(), 2)
    datamap = DataMap(data, Overlays({}), CHUNK // 16)
    devices = DeviceTable([], 1)
    state = PoolState(Geometry(CHUNK, 2, 64), threading.RLock(), nodes, datamap, devices)
    transaction = Transaction("p", state, meta, chunks, clean=True)
    yield transaction, nodes, datamap, devices, chunks
    chunks.close()


def test_a_commit_stores_what_every_owner_hands_over(layers, meta, tmp_path):
    transaction, nodes, datamap, devices, _ = layers
    root = nodes.new(0)
    chunk = datamap.allocate()
    datamap.reference(chunk)
    nodes.get(root).entries[0] = chunk + 1
    devices.add("v", VOLUME, 4 * CHUNK, root, None, 1, 0.0)
    assert transaction.pending()
    transaction.commit()
    assert not transaction.pending()
    again = MetaStore(meta.path, str(tmp_path))  # a second connection sees what committed
    assert [row[1] for row in again.devices()] == ["v"]
    assert again.node(root)[0] == 0
    assert again.settings()["data_high_water"] == 1
    again.close()


def test_freed_chunks_are_zeroed_and_reused_only_after_the_commit(layers):
    transaction, _, datamap, _, chunks = layers
    chunk = datamap.allocate()
    datamap.reference(chunk)
    chunks.write(chunk * CHUNK, b"old data")
    transaction.commit()
    datamap.drop(chunk)
    assert datamap.allocate() != chunk  # freed in this transaction: not yet
    transaction.commit()
    assert datamap.allocate() == chunk
    view = memoryview(bytearray(8))
    chunks.readinto(chunk * CHUNK, view)
    assert bytes(view) == bytes(8)


def test_a_failed_control_operation_is_undone(layers):
    transaction, nodes, _, devices, _ = layers
    with transaction.control():
        devices.add("v", VOLUME, CHUNK, 0, None, 0, 0.0)
    created = []
    with pytest.raises(exception.AlreadyExists), transaction.control():
        created.append(nodes.new(0))
        devices.add("w", VOLUME, CHUNK, 0, None, 0, 0.0)
        devices.add("v", VOLUME, CHUNK, 0, None, 0, 0.0)
    assert [d.name for d in devices.all()] == ["v"]
    assert not transaction.pending()
    assert nodes.count(created[0]) == 0
    assert devices.add("w", VOLUME, CHUNK, 0, None, 0, 0.0).id == 2  # the id was not used up


def _stored_clean(meta) -> int:
    return int(meta.settings()["clean"])


def test_a_commit_that_first_frees_chunks_takes_the_clean_mark_away_with_it(layers, meta):
    transaction, _, datamap, _, _ = layers
    chunk = datamap.allocate()
    datamap.reference(chunk)
    transaction.commit()
    assert _stored_clean(meta) == 1  # a chunk allocated by hand: nothing asked for the mark
    datamap.drop(chunk)
    transaction.commit()
    assert _stored_clean(meta) == 0 and not transaction.marked_clean


def test_allocating_takes_the_clean_mark_away_once_and_closing_gives_it_back(layers, meta):
    transaction, _, datamap, _, _ = layers
    transaction.before_allocating()
    assert _stored_clean(meta) == 0
    transaction.before_allocating()  # already away: nothing more to store
    chunk = datamap.allocate()
    datamap.reference(chunk)
    transaction.commit_locked(closing=True)
    assert _stored_clean(meta) == 1 and transaction.marked_clean


def test_closing_keeps_the_mark_away_while_freed_chunks_are_not_zeroed(layers, meta, monkeypatch):
    transaction, _, datamap, _, chunks = layers
    transaction.before_allocating()
    chunk = datamap.allocate()
    datamap.reference(chunk)
    transaction.commit()
    datamap.drop(chunk)

    def full(chunk_numbers):
        raise exception.FileSystemFull(pool="p", detail="no space to zero")

    monkeypatch.setattr(chunks, "zero_chunks", full)
    transaction.commit_locked(closing=True)
    assert _stored_clean(meta) == 0  # the freed chunk may still hold its data


def test_an_unclean_pool_zeroes_its_free_chunks_before_the_first_allocation(layers):
    transaction, nodes, datamap, devices, chunks = layers
    stale = datamap.allocate()
    datamap.unreserve(stale)
    transaction.commit()
    chunks.write(stale * CHUNK, b"left by a crash")
    unclean = Transaction("p", transaction._state, transaction._meta, chunks, clean=False)
    view = memoryview(bytearray(15))
    chunks.readinto(stale * CHUNK, view)
    assert bytes(view) == b"left by a crash"  # opening alone zeroes nothing
    unclean.before_allocating()
    chunks.readinto(stale * CHUNK, view)
    assert bytes(view) == bytes(15)


@contextlib.contextmanager
def _a_commit_in_its_data_sync(transaction, chunks):
    """Run a commit in another thread and hold it in its data sync until the block ends: a
    fault injection, since a real disk's slow sync is not reproducible."""
    entered, release = threading.Event(), threading.Event()
    real_sync = chunks.sync

    def sync():
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
        real_sync()

    chunks.sync = sync
    committer = threading.Thread(target=transaction.commit)
    committer.start()
    try:
        assert entered.wait(10)
        yield
    finally:
        release.set()
        committer.join(10)
        chunks.sync = real_sync


def _runs_only_after(transaction, chunks, action) -> bool:
    """Whether ``action`` (in its own thread) waits while a commit is held in its sync,
    then completes once it is let go."""
    done = threading.Event()
    worker = threading.Thread(target=lambda: (action(), done.set()))
    with _a_commit_in_its_data_sync(transaction, chunks):
        worker.start()
        waited = not done.wait(0.3)
    worker.join(10)
    return waited and done.is_set()


def test_writers_change_metadata_while_a_commit_syncs_and_stores(layers, meta, tmp_path):
    """The lock is free during the commit's data sync; what changes meanwhile is the next
    commit's, and the stored generation is the one taken."""
    transaction, nodes, _, devices, chunks = layers
    first = nodes.new(0)
    devices.add("v", VOLUME, CHUNK, first, None, 0, 0.0)
    with _a_commit_in_its_data_sync(transaction, chunks), transaction.lock:
        nodes.get(first).entries[0] = 5
        nodes.mark_dirty(first)
        second = nodes.new(0)
    again = MetaStore(meta.path, str(tmp_path))
    assert again.node(first)[1] == bytes(16) and again.node(second) is None
    assert transaction.pending()
    transaction.commit()
    assert again.node(first)[1][:4] == (5).to_bytes(4, "little")
    assert again.node(second) is not None
    again.close()


def test_a_flush_waits_for_the_commit_that_holds_its_metadata(layers):
    """A commit took the changes; a flush arriving meanwhile sees nothing pending, yet must
    not return before that commit is durable."""
    transaction, nodes, _, _, chunks = layers
    nodes.new(0)
    assert _runs_only_after(transaction, chunks, transaction.flush)
    assert not transaction.pending()


def test_a_control_operation_waits_for_a_commit_that_is_storing(layers, meta, tmp_path):
    """Its undo returns to the stored metadata, so it must not begin while a commit is
    half way there."""
    transaction, nodes, _, devices, chunks = layers
    node = nodes.new(0)
    stored_when_it_began = []

    def operation():
        with transaction.control():
            again = MetaStore(meta.path, str(tmp_path))  # what is stored now
            stored_when_it_began.append(again.node(node) is not None)
            again.close()
            devices.add("v", VOLUME, CHUNK, 0, None, 0, 0.0)

    assert _runs_only_after(transaction, chunks, operation)
    assert stored_when_it_began == [True]
    assert [d.name for d in devices.all()] == ["v"]


def test_a_failed_commit_hands_its_changes_back(layers, meta, tmp_path, monkeypatch):
    """The failure is injected (the metadata write raises), as a full disk would."""
    transaction, nodes, _, _, _ = layers
    node = nodes.new(0)
    real_save = MetaStore.save

    def failing_save(store, change):
        raise exception.FileSystemFull(pool="p", detail="injected")

    monkeypatch.setattr(MetaStore, "save", failing_save)
    with pytest.raises(exception.FileSystemFull):
        transaction.commit()
    assert transaction.pending()
    monkeypatch.setattr(MetaStore, "save", real_save)
    transaction.commit()
    again = MetaStore(meta.path, str(tmp_path))
    assert again.node(node) is not None
    again.close()
