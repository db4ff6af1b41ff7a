"""Layers built on their own, over real files in a temporary directory."""

import os

import pytest

from evs_driver.rowstore.metastore import MetaStore
from evs_driver.rowstore.nodes import NodeStore
from evs_driver.rowstore.spacemap import SpaceMap

SETTINGS = {
    "chunk_size": 4096,
    "node_bits": 2,
    "capacity_chunks": 64,
    "data_high_water": 0,
    "node_high_water": 0,
    "next_device_id": 1,
    "clean": 1,
}


@pytest.fixture
def meta(tmp_path):
    """An empty metadata store of a pool in ``tmp_path``."""
    path = os.path.join(tmp_path, "metadata.sqlite")
    MetaStore.create(path, str(tmp_path), dict(SETTINGS))
    store = MetaStore.open(path, str(tmp_path))
    yield store
    store.close()


def memory_nodes(bits: int = 2, data_limit: int = 64) -> tuple[NodeStore, SpaceMap]:
    """A node store whose committed state is empty, and the data space map it counts into."""
    data = SpaceMap("data", {}, 0, data_limit)
    nodes = NodeStore(lambda node_id: None, SpaceMap("nodes", {}, 0, None), data, set(), bits)
    return nodes, data
