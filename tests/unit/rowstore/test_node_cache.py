"""A node cache bounded to a few nodes: eviction keeps every read, write and the checker
right, and the cache holds no more than its bound (within one request, no more than the
bound's clean half plus the nodes that request changes)."""

import os

from hypothesis import settings
from hypothesis.stateful import invariant

from evs_driver.rowstore import Pool
from evs_driver.rowstore.nodes import cache_nodes
from tests.unit.rowstore.conftest import CHUNK
from tests.unit.rowstore.test_model import MODEL_SETTINGS, PoolModel

NODE_BYTES = 4 * 4 + 200  # a node of fan-out 4 in the cache
MODEL_BOUND = 4  # nodes: the model's trees have up to ~50 each, so most reads evict


class TinyCacheModel(PoolModel):
    """The random workload of ``test_model`` with a node cache of 4 nodes."""

    pool_options = {"node_cache_bytes": MODEL_BOUND * NODE_BYTES}

    @invariant()
    def cache_within_bound(self):
        nodes = self.pool._nodes
        assert nodes.cache_limit == MODEL_BOUND
        assert nodes.cached <= MODEL_BOUND  # between requests: strictly


# Fewer runs than test_model's: the workload is the same, only the cache differs.
TinyCacheModel.TestCase.settings = settings(
    MODEL_SETTINGS, max_examples=int(os.environ.get("EVS_MODEL_EXAMPLES", "10"))
)
TestTinyCacheModel = TinyCacheModel.TestCase


def test_the_bound_is_in_bytes_of_nodes():
    assert cache_nodes(16 * NODE_BYTES, 2) == 16
    assert cache_nodes(256 * 1024 * 1024, 10) == 62484
    assert cache_nodes(1, 10) == 1


def test_a_mapping_larger_than_the_cache_reads_back_after_eviction(tmp_path):
    """Writes in many leaves, a snapshot and overwrites: far more nodes than the cache holds.

    Trees of height 5 and writes within one leaf: a write changes at most 5 nodes, and the
    pool commits once 8 are changed, so even within a request the cache keeps its bound."""
    path, bound = str(tmp_path / "pool"), 16
    pool = Pool.create(
        path,
        2048 * CHUNK,
        CHUNK,
        node_bits=2,
        background=False,
        node_cache_bytes=bound * NODE_BYTES,
    )
    loaded = []
    loader = pool._nodes._loader
    pool._nodes._loader = lambda node_id: (loaded.append(node_id), loader(node_id))[1]
    pool.create_volume("v", 1024 * CHUNK)
    expected = bytearray(1024 * CHUNK)
    for vchunk in range(0, 1024, 3):
        data = os.urandom(CHUNK // 2)
        pool.write("v", vchunk * CHUNK + 100, data)
        expected[vchunk * CHUNK + 100 : vchunk * CHUNK + 100 + len(data)] = data
    pool.create_snapshot("v", "s")
    snapshot = bytes(expected)
    for vchunk in range(1, 1024, 5):
        pool.write("v", vchunk * CHUNK, b"y" * 512)
        expected[vchunk * CHUNK : vchunk * CHUNK + 512] = b"y" * 512
    pool.discard("v", 100 * CHUNK, 300 * CHUNK)
    expected[100 * CHUNK : 400 * CHUNK] = bytes(300 * CHUNK)
    assert pool.read("v", 0, len(expected)) == expected
    assert pool.read("s", 0, len(snapshot)) == snapshot
    assert loaded, "nothing was evicted and read back"
    assert pool._nodes.cache_peak == bound
    assert pool.check().clean
    pool.close()
    with Pool.open(path, background=False, node_cache_bytes=bound * NODE_BYTES) as again:
        assert again.read("v", 0, len(expected)) == expected
        assert again.check().clean
