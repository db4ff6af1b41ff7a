"""The node store alone: copy-on-write shadowing, garbage, and the changes it hands over."""

from array import array

import pytest

from evs_driver import exception
from evs_driver.rowstore.nodes import NODE_OVERHEAD, NodeStore
from evs_driver.rowstore.spacemap import SpaceMap
from tests.unit.rowstore.layers.conftest import memory_nodes


def test_a_new_node_has_one_reference_and_is_handed_to_the_next_commit():
    nodes, _ = memory_nodes()
    node_id = nodes.new(0)
    assert node_id != 0 and nodes.count(node_id) == 1
    changes = nodes.changes()
    assert [row[:2] for row in changes.rows] == [(node_id, 0)]
    assert changes.high_water == 1 and changes.pages
    nodes.stored(nodes.hand_over())
    assert not nodes.pending()


def test_writing_through_a_shared_node_shadows_it_and_shares_its_children():
    nodes, data = memory_nodes()
    leaf = nodes.new(0)
    chunk = data.allocate()
    data.inc(chunk)
    nodes.get(leaf).entries[1] = chunk + 1
    nodes.inc(leaf)  # a snapshot shares it
    copy = nodes.writable(leaf)
    assert copy != leaf
    assert (nodes.count(leaf), nodes.count(copy)) == (1, 1)
    assert data.get(chunk) == 2  # both leaves map the chunk
    assert nodes.get(copy).entries[1] == chunk + 1
    assert nodes.writable(copy) == copy  # unshared: modified in place


def test_a_node_whose_count_reaches_zero_is_garbage_until_freed():
    nodes, _ = memory_nodes()
    node_id = nodes.new(0)
    nodes.drop(node_id)
    assert nodes.garbage_count == 1 and nodes.next_garbage() == node_id
    assert nodes.changes().garbage == [node_id]
    nodes.free(node_id)
    changes = nodes.changes()
    assert changes.deleted == [node_id] and changes.garbage == []
    assert nodes.next_garbage() is None


def test_discarding_changes_returns_to_the_committed_state():
    nodes, _ = memory_nodes()
    kept = nodes.new(0)
    committed = SpaceMap("nodes", dict(nodes.changes().pages), 1, None)
    nodes.stored(nodes.hand_over())
    nodes.inc(kept)
    nodes.new(1)
    nodes.discard_changes(committed, set())
    assert not nodes.pending()
    assert nodes.count(kept) == 1


def test_a_missing_node_is_reported_as_damage():
    nodes = NodeStore(lambda node_id: None, SpaceMap("n", {}, 0, None), None, set(), 2)
    with pytest.raises(exception.PoolCorrupt, match="node 7 is referenced but missing"):
        nodes.get(7)


def _committed_store(bits: int, cache_bytes: int, count: int):
    """A node store over ``count`` committed leaves, ids 1..count, entry 0 = id."""
    rows = {
        i: (0, array("I", [i] + [0] * ((1 << bits) - 1)).tobytes()) for i in range(1, count + 1)
    }
    loads = []
    refs = SpaceMap("nodes", {}, 0, None)
    for _ in rows:
        refs.inc(refs.allocate())
    refs.hand_over()
    nodes = NodeStore(
        lambda i: (loads.append(i), rows.get(i))[1], refs, None, set(), bits, cache_bytes
    )
    return nodes, loads


def test_the_least_recently_used_clean_node_is_evicted_and_read_back():
    nodes, loads = _committed_store(2, cache_nodes_bytes(3), 5)
    for i in (1, 2, 3, 1, 4):  # 2 is then the least recently used
        assert nodes.get(i).entries[0] == i
    assert nodes.cached == 3 and loads == [1, 2, 3, 4]
    nodes.get(1), nodes.get(3)
    assert loads == [1, 2, 3, 4]
    nodes.get(2)
    assert loads == [1, 2, 3, 4, 2]


def test_a_changed_node_stays_until_committed_and_is_stored_as_changed():
    nodes, loads = _committed_store(2, cache_nodes_bytes(4), 6)
    leaf = nodes.get(1)
    nodes.mark_dirty(1)
    leaf.entries[1] = 9
    assert not nodes.crowded()
    new = nodes.new(0)
    assert nodes.crowded()  # changed nodes fill half the cache: time to commit
    for i in (2, 3, 4, 5, 6):
        nodes.get(i)
    assert nodes.get(1) is leaf and nodes.cached == 4  # two clean ones beside them
    assert {row[0] for row in nodes.changes().rows} == {1, new}
    nodes.stored(nodes.hand_over())
    assert not nodes.crowded() and nodes.cached == 4 and nodes.cache_peak == 4
    assert nodes.get(1) is leaf  # committed last: the most recently used
    assert loads == [1, 2, 3, 4, 5, 6]


def test_a_leaf_changed_after_its_eviction_goes_back_as_changed():
    """A writer holds a leaf across a commit, the cache evicts it and a reader loads it again:
    the writer's copy, with its change, is the one stored."""
    nodes, _ = _committed_store(2, cache_nodes_bytes(1), 3)
    held = nodes.get(1)
    nodes.get(2)  # evicts 1
    assert nodes.get(1) is not held  # read back by someone else
    held.entries[1] = 7
    nodes.mark_dirty(1, held)
    assert nodes.get(1) is held
    assert nodes.changes().rows == [(1, 0, held.body())]


def cache_nodes_bytes(count: int, bits: int = 2) -> int:
    """Bytes of a cache that holds ``count`` nodes of 2**bits entries."""
    return count * (4 * (1 << bits) + NODE_OVERHEAD)


def test_a_node_a_commit_is_storing_stays_and_one_changed_meanwhile_stays_changed():
    nodes, loads = _committed_store(2, cache_nodes_bytes(1), 3)
    leaf = nodes.get(1)
    nodes.mark_dirty(1)
    leaf.entries[1] = 9
    other = nodes.new(0)
    handed = nodes.hand_over()
    assert not nodes.pending()
    nodes.get(2), nodes.get(3)  # the bound is one node: clean ones come and go
    assert nodes.get(1) is leaf  # not read back: its stored row is not there yet
    nodes.mark_dirty(other)  # changed again before the commit ends
    nodes.stored(handed)
    assert [row[0] for row in nodes.changes().rows] == [other]
    assert loads == [1, 2, 3]


def test_a_failed_commit_gives_its_nodes_back_as_changed():
    nodes, _ = memory_nodes()
    node_id = nodes.new(0)
    handed = nodes.hand_over()
    nodes.take_back(handed)
    assert [row[0] for row in nodes.changes().rows] == [node_id] and nodes.changes().pages
