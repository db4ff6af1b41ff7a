"""The model-based test must fail when a real bug is planted in the engine.

Each case patches one engine function with a subtly wrong version (fault injection with
monkeypatch: there is no real part that produces these bugs on demand) and expects the
state machine to report a mismatch or a checker problem.
"""

import pytest
from hypothesis import Phase, settings
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import run_state_machine_as_test

from evs_driver.rowstore import nodes, pool
from tests.unit.rowstore.test_model import MODEL_SETTINGS, PoolModel


def _copy_without_child_refs(self, node_id):
    """Shadowing that forgets to take references on the copied node's children."""
    if self.count(node_id) == 1:
        self.dirty.add(node_id)
        return node_id
    original = self.get(node_id)
    copy_id = self.new(original.level, type(original.entries)("I", original.entries))
    self.drop(node_id)
    return copy_id


def _leaf_ignoring_shared_parents(self, device, height, vchunk):
    """Treats a leaf as writable in place even when a node above it is shared."""
    node_id = device.root
    if not node_id:
        return None
    for level in range(height - 1, 0, -1):
        node_id = self._nodes.get(node_id).entries[
            (vchunk >> (self._nodes.bits * level)) & self._nodes.mask
        ]
        if not node_id:
            return None
    return pool._WritableLeaf(self._nodes.get(node_id), node_id, self._nodes)


def _overlay_read_ignoring_base(self, chunk, base, valid, in_offset, view):
    """Reads every block of an overlay from the overlay, as if all were valid."""
    self._chunks.readinto(chunk * self.chunk_size + in_offset, view)


def _drop_forgetting_overlay_base(self, chunk):
    """Frees an overlay without dropping its reference on its base."""
    if not self._data.dec(chunk):
        self._data.release(chunk)
        self._overlays.remove(chunk)


def _edges_not_filled(self, source, in_offset, piece):
    """Writes a partial block of an overlay without the base's bytes around it."""
    block = self._block
    low = in_offset // block * block
    widened = bytearray(-(-(in_offset + len(piece)) // block) * block - low)
    widened[in_offset - low : in_offset - low + len(piece)] = piece
    return low, widened


@pytest.mark.parametrize(
    "target, attribute, bug, examples",
    [
        (nodes.NodeStore, "writable", _copy_without_child_refs, 200),
        (pool.Pool, "_exclusive_leaf", _leaf_ignoring_shared_parents, 200),
        (pool.Pool, "_read_overlay", _overlay_read_ignoring_base, 200),
        # Needs write, snapshot, small write, then the overlay freed: rarer, so more examples.
        pytest.param(pool.Pool, "_drop_chunk", _drop_forgetting_overlay_base, 1000),
        (pool.Pool, "_whole_blocks", _edges_not_filled, 200),
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
            settings=settings(MODEL_SETTINGS, max_examples=examples, phases=[Phase.generate]),
        )
