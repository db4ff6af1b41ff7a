"""The tree alone: lookups, path shadowing, pruning, growing and exclusivity."""

from evs_driver.rowstore import tree
from tests.unit.rowstore.layers.conftest import memory_nodes

HEIGHT = 3  # fan-out 4: 64 slots


def _map(nodes, data, root, vchunk):
    path = tree.writable_path(nodes, root, HEIGHT, vchunk)
    chunk = data.allocate()
    data.inc(chunk)
    nodes.get(path[-1]).entries[vchunk & nodes.mask] = chunk + 1
    return path[0], chunk


def test_a_written_path_maps_its_slot_and_nothing_else():
    nodes, data = memory_nodes()
    root, chunk = _map(nodes, data, 0, 37)
    assert tree.lookup_run(nodes, root, HEIGHT, 36, 3) == [0, chunk + 1, 0]
    assert tree.find_leaf(nodes, root, HEIGHT, 0) is None
    assert tree.lookup_run(nodes, 0, HEIGHT, 0, 2) == [0, 0]


def test_prune_drops_the_emptied_nodes_up_to_the_root():
    nodes, data = memory_nodes()
    root, _ = _map(nodes, data, 0, 37)
    path = tree.writable_path(nodes, root, HEIGHT, 37)
    nodes.get(path[-1]).entries[37 & nodes.mask] = 0
    assert tree.prune(nodes, path, 37) == 0
    assert nodes.garbage_count == 3


def test_grow_keeps_every_mapping_under_a_taller_tree():
    nodes, data = memory_nodes()
    root, chunk = _map(nodes, data, 0, 5)
    taller = tree.grow(nodes, root, HEIGHT, HEIGHT + 2)
    assert tree.lookup_run(nodes, taller, HEIGHT + 2, 5, 1) == [chunk + 1]


def test_a_leaf_is_exclusive_only_when_no_node_above_it_is_shared():
    nodes, data = memory_nodes()
    root, chunk = _map(nodes, data, 0, 9)
    leaf = tree.exclusive_leaf(nodes, root, HEIGHT, 9)
    assert leaf is not None and leaf.entries[9 & nodes.mask] == chunk + 1
    assert list(tree.exclusive_entries(nodes, root)) == [chunk + 1]
    nodes.inc(root)  # shared by a snapshot
    assert tree.exclusive_leaf(nodes, root, HEIGHT, 9) is None
    assert list(tree.exclusive_entries(nodes, root)) == []
