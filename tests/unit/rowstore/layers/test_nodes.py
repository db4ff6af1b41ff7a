"""The node store alone: copy-on-write shadowing, garbage, and the changes it hands over."""

import pytest

from evs_driver import exception
from evs_driver.rowstore.nodes import NodeStore
from evs_driver.rowstore.spacemap import SpaceMap
from tests.unit.rowstore.layers.conftest import memory_nodes


def test_a_new_node_has_one_reference_and_is_handed_to_the_next_commit():
    nodes, _ = memory_nodes()
    node_id = nodes.new(0)
    assert node_id != 0 and nodes.count(node_id) == 1
    changes = nodes.changes()
    assert [row[:2] for row in changes.rows] == [(node_id, 0)]
    assert changes.high_water == 1 and changes.pages
    nodes.committed()
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
    nodes.committed()
    nodes.inc(kept)
    nodes.new(1)
    nodes.discard_changes(committed, set())
    assert not nodes.pending()
    assert nodes.count(kept) == 1


def test_a_missing_node_is_reported_as_damage():
    nodes = NodeStore(lambda node_id: None, SpaceMap("n", {}, 0, None), None, set(), 2)
    with pytest.raises(exception.PoolCorrupt, match="node 7 is referenced but missing"):
        nodes.get(7)
