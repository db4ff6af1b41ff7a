"""The model-based test must fail when a real bug is planted in the engine.

Each case replaces one public seam of an engine layer with a subtly wrong version (fault
injection with monkeypatch: there is no real part that produces these bugs on demand) and
expects the state machine to report a mismatch or a checker problem. The runs are
derandomized, so each case is caught the same way every time.
"""

from array import array

import pytest
from hypothesis import Phase, settings
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import run_state_machine_as_test

from evs_driver.rowstore import overlays, tree
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.nodes import NodeStore
from evs_driver.rowstore.readpath import ReadPath
from evs_driver.rowstore.writepath import WritePath
from tests.unit.rowstore.test_model import MODEL_SETTINGS, PoolModel


def _copy_without_child_refs(self, node_id):
    """Shadowing that forgets to take references on the copied node's children."""
    if self.count(node_id) == 1:
        self.mark_dirty(node_id)
        return node_id
    original = self.get(node_id)
    copy_id = self.new(original.level, array("I", original.entries))
    self.drop(node_id)
    return copy_id


def _leaf_ignoring_shared_parents(nodes, root, height, vchunk):
    """Treats a leaf as writable in place even when a node above it is shared."""
    node_id = root
    for level in range(height - 1, 0, -1):
        if not node_id:
            return None
        node_id = nodes.get(node_id).entries[(vchunk >> (nodes.bits * level)) & nodes.mask]
    return tree.WritableLeaf(nodes, node_id) if node_id else None


_read_overlay = ReadPath.read_overlay


def _overlay_read_ignoring_base(self, chunk, base, valid, in_offset, view):
    """Reads every block of an overlay from the overlay, as if all were valid."""
    _read_overlay(self, chunk, base, overlays.FULL, in_offset, view)


_drop = DataMap.drop


def _drop_forgetting_overlay_base(self, chunk):
    """Frees an overlay without dropping its reference on its base."""
    row = self.overlay(chunk)
    _drop(self, chunk)
    if row is not None and self.overlay(chunk) is None:
        self.reference(row[0])  # the base keeps the reference the overlay held


_whole_blocks = WritePath.whole_blocks


def _edges_not_filled(self, source, in_offset, data):
    """Writes a partial block of an overlay without the base's bytes around it."""
    low, widened = _whole_blocks(self, source, in_offset, data)
    bare = bytearray(len(widened))
    bare[in_offset - low : in_offset - low + len(data)] = data
    return low, bare


@pytest.mark.parametrize(
    "target, attribute, bug, examples",
    [
        (NodeStore, "writable", _copy_without_child_refs, 200),
        (tree, "exclusive_leaf", _leaf_ignoring_shared_parents, 200),
        (ReadPath, "read_overlay", _overlay_read_ignoring_base, 200),
        # Needs write, snapshot, small write, then the overlay freed: rarer, so more examples.
        (DataMap, "drop", _drop_forgetting_overlay_base, 1000),
        (WritePath, "whole_blocks", _edges_not_filled, 400),
    ],
    ids=[
        "shadow-forgets-child-refs",
        "in-place-write-under-shared-node",
        "overlay-read-ignores-base",
        "overlay-free-keeps-base",
        "overlay-edges-not-filled",
    ],
)
def test_model_catches_planted_bug(monkeypatch, target, attribute, bug, examples):
    monkeypatch.setattr(target, attribute, bug)
    with pytest.raises((AssertionError, FlakyFailure, ExceptionGroup)):
        run_state_machine_as_test(
            PoolModel,
            settings=settings(
                MODEL_SETTINGS, max_examples=examples, phases=[Phase.generate], derandomize=True
            ),
        )
