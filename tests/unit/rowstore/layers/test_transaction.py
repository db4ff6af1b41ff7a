"""The transaction alone: it stores every owner's changes, data first, and reuses freed
space only after the commit; a failed control operation leaves no trace."""

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
    transaction = Transaction("p", state, meta, chunks)
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
