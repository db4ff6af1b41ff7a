"""The collector alone: a deleted tree is freed a batch at a time, shared parts survive."""

from evs_driver.rowstore import collector, tree
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.overlays import Overlays
from tests.unit.rowstore.layers.conftest import memory_nodes

HEIGHT = 3


def _tree(nodes, data, vchunks):
    root = 0
    for vchunk in vchunks:
        path = tree.writable_path(nodes, root, HEIGHT, vchunk)
        root = path[0]
        chunk = data.allocate()
        data.inc(chunk)
        nodes.get(path[-1]).entries[vchunk & nodes.mask] = chunk + 1
    return root


def test_a_dropped_tree_is_collected_in_batches_and_frees_its_chunks():
    nodes, data = memory_nodes()
    datamap = DataMap(data, Overlays({}), 256)
    root = _tree(nodes, data, [0, 5, 40, 63])
    nodes.drop(root)
    done, more = collector.collect_batch(nodes, datamap, budget=2)
    assert (done, more) == (2, True)
    while more:
        more = collector.collect_batch(nodes, datamap, budget=2)[1]
    assert data.used == 0 and nodes.garbage_count == 0
    assert sorted(datamap.freed()) == [0, 1, 2, 3]


def test_what_another_tree_shares_is_kept():
    nodes, data = memory_nodes()
    datamap = DataMap(data, Overlays({}), 256)
    root = _tree(nodes, data, [0, 40])
    nodes.inc(root)
    snapshot_root = root
    root = tree.writable_path(nodes, root, HEIGHT, 0)[0]  # the volume shadows its path
    nodes.drop(snapshot_root)  # delete the snapshot
    while collector.collect_batch(nodes, datamap, budget=10)[1]:
        pass
    assert data.used == 2  # both chunks are still the volume's
    assert tree.lookup_run(nodes, root, HEIGHT, 40, 1) == [2]
