"""Changed blocks between two devices, from their trees alone (dm-thin's ``thin_delta``).

Invariants this relies on, kept by the layers below:
- two trees that share a node share everything beneath it, so a walk skips shared subtrees
  and costs what differs plus the nodes above it, never the devices' size;
- equal leaf entries map the same chunk, and a chunk two devices share is never changed in
  place (the write path redirects), so equal entries hold equal data;
- an overlay's unwritten blocks read as its base (itself perhaps an overlay), so two
  chunks whose chains of bases meet differ at most in the blocks held above the meeting.

A device's tree addresses slots beyond its size as empty, and a shorter tree is read as if
grown (``tree.grow``: the old root as entry 0 of each new level), so devices of different
sizes compare as if the smaller were zeros past its end.
"""

import contextlib
import dataclasses

from evs_driver.rowstore import overlays
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.devicetable import Device
from evs_driver.rowstore.nodes import NodeStore
from evs_driver.rowstore.state import PoolState

DATA, ZERO = "data", "zero"  # what the newer device holds in a changed extent

#: Nodes one walk visits before it lets the metadata lock go (the caller resumes).
NODE_BUDGET = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Tree:
    """One device's tree: its root (0 when empty) and height."""

    root: int
    height: int


@dataclasses.dataclass(frozen=True, slots=True)
class Difference:
    """One slot whose leaf entries differ: its chunk number and both entries (chunk + 1)."""

    vchunk: int
    old: int
    new: int


def walk(nodes: NodeStore, old: Tree, new: Tree, first: int, end: int, budget: int = NODE_BUDGET):
    """Slots in ``[first, end)`` whose entries differ, in order, and where to resume.

    Visits at most ``budget`` nodes (at least one); returns ``(changes, resume)`` with
    ``resume == end`` when the range is done. Call under the metadata lock.
    """
    height = max(old.height, new.height)
    budget = max(budget, height + 1)  # enough to reach the first leaf: always progress
    bits, fanout = nodes.bits, nodes.fanout
    stack = [(_top(old, height), _top(new, height), height - 1, 0)]
    changes: list[Difference] = []
    visited = 0
    while stack:
        if visited >= budget:
            return changes, max(first, stack[-1][3])
        ref_old, ref_new, level, base = stack.pop()
        span = 1 << (bits * level)  # slots under one entry of this node
        low = max(0, (first - base) // span)
        high = min(fanout, -(-(end - base) // span))
        if low >= high:
            continue
        visited += 1
        entries_old = _entries(nodes, ref_old, old, level)
        entries_new = _entries(nodes, ref_new, new, level)
        if level == 0:
            for index in range(low, high):
                if entries_old[index] != entries_new[index]:
                    changes.append(Difference(base + index, entries_old[index], entries_new[index]))
            continue
        for index in range(high - 1, low - 1, -1):  # pushed backwards: popped in order
            child_old, child_new = entries_old[index], entries_new[index]
            if child_old != child_new:
                stack.append((child_old, child_new, level - 1, base + index * span))
    return changes, end


def _top(tree: Tree, height: int) -> int:
    """The reference of ``tree``'s node at level ``height - 1``: negative when virtual."""
    if tree.height == height or not tree.root:
        return tree.root
    return -tree.root


def _entries(nodes: NodeStore, ref: int, tree: Tree, level: int):
    """The entries of a node reference at ``level``; a virtual node (a level above a short
    tree's root) holds only entry 0: the node below it, or the root itself."""
    if ref > 0:
        return nodes.get(ref).entries
    entries = [0] * nodes.fanout
    if ref < 0:
        entries[0] = -ref if level == tree.height else ref
    return entries


def changed_blocks(datamap: DataMap, old: int, new: int) -> int:
    """The overlay blocks of a chunk that may differ between two leaf entries (a mask;
    ``overlays.FULL`` when the whole chunk may): the blocks the levels above the first
    chunk both chains of bases share hold. Call under the metadata lock."""
    if not old or not new:
        return overlays.FULL
    old_levels, new_levels = datamap.chain(old - 1), datamap.chain(new - 1)
    old_chunks = [chunk for chunk, _ in old_levels]
    for depth, (chunk, _) in enumerate(new_levels):
        if chunk in old_chunks:
            above = new_levels[:depth] + old_levels[: old_chunks.index(chunk)]
            changed = 0
            for _, valid in above:
                changed |= valid
            return changed or overlays.FULL
    return overlays.FULL


def block_runs(mask: int) -> list[tuple[int, int]]:
    """``(first block, block count)`` runs of the set bits of an overlay mask."""
    runs, block = [], 0
    while block < overlays.BLOCKS:
        if mask >> block & 1:
            start = block
            while block < overlays.BLOCKS and mask >> block & 1:
                block += 1
            runs.append((start, block - start))
        else:
            block += 1
    return runs


class Runs:
    """Changed byte ranges ``(offset, length, kind)`` in order, adjacent ones of one kind
    merged, clipped to a window."""

    def __init__(self, start: int, end: int):
        self.start, self.end = start, end
        self.runs: list[tuple[int, int, str]] = []

    def add(self, offset: int, length: int, kind: str) -> None:
        """Add a range (clipped to the window; nothing when outside it)."""
        low, high = max(offset, self.start), min(offset + length, self.end)
        if low >= high:
            return
        if self.runs:
            last_offset, last_length, last_kind = self.runs[-1]
            if last_kind == kind and last_offset + last_length == low:
                self.runs[-1] = (last_offset, high - last_offset, kind)
                return
        self.runs.append((low, high - low, kind))


class Differ:
    """Changed extents between two devices of one pool."""

    def __init__(self, state: PoolState):
        self._state = state

    def diff(
        self,
        old: Device | None,
        new: Device,
        offset: int,
        length: int,
        limit: int | None = None,
    ) -> tuple[list[tuple[int, int, str]], int]:
        """Where ``new`` differs from ``old`` (None: from a device of zeros) within
        ``[offset, offset + length)``: ``(offset, length, kind)`` runs, ``kind`` saying
        whether ``new`` holds data there or reads zeros, and the offset up to which the
        answer is complete (``offset + length`` unless ``limit`` runs were reached first).

        Both devices are read one window at a time, each window under the metadata lock,
        so a long diff never holds writers back for long.
        """
        geometry = self._state.geometry
        size = geometry.chunk_size
        end = offset + length
        runs = Runs(offset, end)
        vchunk, last = offset // size, -(-end // size)
        devices = sorted({d.id: d for d in (old, new) if d is not None}.values(), key=_id)
        while vchunk < last:
            with contextlib.ExitStack() as locks:
                for device in devices:
                    locks.enter_context(device.lock.read())
                    device.require_alive()
                with self._state.lock:
                    trees = [self._tree(old), self._tree(new)]
                    changes, resume = walk(self._state.nodes, *trees, vchunk, last)
                    for change in changes:
                        self._add(runs, change)
                        if limit is not None and len(runs.runs) > limit:
                            # One change may add several runs (an overlay's blocks).
                            while len(runs.runs) > limit:
                                complete = runs.runs.pop()[0]
                            return runs.runs, complete
            vchunk = resume
        return runs.runs, end

    def _tree(self, device: Device | None) -> Tree:
        if device is None:
            return Tree(0, 1)
        return Tree(device.root, self._state.geometry.height(device.size))

    def _add(self, runs: Runs, change: Difference) -> None:
        size, block = self._state.geometry.chunk_size, self._state.geometry.block_size
        kind = DATA if change.new else ZERO
        start = change.vchunk * size
        mask = changed_blocks(self._state.datamap, change.old, change.new)
        for first, count in block_runs(mask):
            runs.add(start + first * block, count * block, kind)


def _id(device: Device) -> int:
    return device.id
