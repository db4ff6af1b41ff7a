"""Discard: a range of a volume reads as zeros afterwards, and whole chunks are unmapped.

Invariant kept here: whole chunks in the range are unmapped (their references dropped and
emptied nodes pruned); the partial chunks at its edges are written with zeros through the
write path, so a chunk another device shares is never changed under it.
"""

from evs_driver.rowstore.devicetable import Device
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.tree import find_leaf, lookup_run, prune, writable_path
from evs_driver.rowstore.writepath import WritePath


class Discarder:
    """Discards on volumes."""

    def __init__(self, state: PoolState, writer: WritePath):
        self._state = state
        self._writer = writer

    def discard(self, device: Device, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` read as zeros (a non-empty range checked)."""
        size = self._state.geometry.chunk_size
        with device.lock.write():
            device.require_alive()
            head_end = min(offset + length, -(-offset // size) * size)
            if head_end > offset:
                self._zero_partial(device, offset, head_end - offset)
            tail_start = max(head_end, (offset + length) // size * size)
            if tail_start < offset + length:
                self._zero_partial(device, tail_start, offset + length - tail_start)
            first, end = -(-offset // size), (offset + length) // size
            if end > first:
                with self._state.lock:
                    self._unmap(device, first, end)

    def _zero_partial(self, device: Device, offset: int, length: int) -> None:
        with self._state.lock:
            height = self._state.geometry.height(device.size)
            vchunk = offset // self._state.geometry.chunk_size
            (entry,) = lookup_run(self._state.nodes, device.root, height, vchunk, 1)
        if entry:
            self._writer.write_exclusive(device, offset, memoryview(bytes(length)))

    def _unmap(self, device: Device, first: int, end: int) -> None:
        """Unmap whole chunks [first, end), skipping empty leaves; drop emptied nodes."""
        height = self._state.geometry.height(device.size)
        nodes, mask = self._state.nodes, self._state.nodes.mask
        vchunk = first
        while vchunk < end:
            leaf_end = min(end, (vchunk | mask) + 1)
            first_slot, last_slot = vchunk & mask, (leaf_end - 1) & mask
            leaf = find_leaf(nodes, device.root, height, vchunk) if device.root else None
            if leaf is None or not any(leaf.entries[first_slot : last_slot + 1]):
                vchunk = leaf_end
                continue
            path = writable_path(nodes, device.root, height, vchunk)
            device.root = path[0]
            entries = nodes.get(path[-1]).entries
            for slot in range(first_slot, last_slot + 1):
                entry = entries[slot]
                if entry:
                    entries[slot] = 0
                    device.mapped -= 1
                    self._state.datamap.drop(entry - 1)
            device.root = prune(nodes, path, vchunk)
            self._state.devices.touch(device)
            self._writer.commit_if_crowded()  # a long discard may change many leaves
            vchunk = leaf_end
