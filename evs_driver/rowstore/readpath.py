"""The read path: a device's bytes from one tree walk and as few reads as possible.

Invariants kept here: unmapped ranges read as zeros; an overlay's valid blocks come from it
and the others from its base; reading one device never blocks another's reads, and the
metadata lock is held only to look up the mapping, never across data I/O.
"""

import itertools

from evs_driver import fileio
from evs_driver.blockdev import HOLE, ZERO, Extents
from evs_driver.rowstore import overlays
from evs_driver.rowstore.chunkstore import ChunkStore
from evs_driver.rowstore.devicetable import Device
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.tree import leaf_spans, lookup_run

EXTENT_CHUNKS = 65536  # chunks one extents() call looks up


class ReadPath:
    """Reads of devices and of single physical chunks."""

    def __init__(self, state: PoolState, chunks: ChunkStore):
        self._state = state
        self._chunks = chunks

    def readinto(self, device: Device, offset: int, view: memoryview) -> None:
        """Fill ``view`` with ``device``'s bytes at ``offset`` (a range the caller checked)."""
        length = len(view)
        size = self._state.geometry.chunk_size
        first = offset // size
        count = (offset + length - 1) // size - first + 1
        with device.lock.read():
            device.require_alive()
            entries = self.entries(device, first, count)
            # Rows of chunks this device maps change under its read lock only by gaining
            # blocks that writes in flight wrote first, so a row read without the lock shows
            # each block old or new; anything else (or a free, which our references
            # prevent) needs the device's write lock.
            rows = self._state.datamap.overlay_rows()
            if count == 1:  # most requests: a block or a few, inside one chunk
                self._read_one(entries[0], rows, offset % size, view)
                return
            if _one_plain_run(entries, rows):  # a sequential read of a sequential write
                self._chunks.readinto((entries[0] - 1) * size + offset % size, view)
                return
            # Coalesce physically consecutive pieces into one preadv each.
            run_position = run_start = run_end = -1
            for index, entry in enumerate(entries):
                start = max(offset, (first + index) * size) - offset
                end = min(offset + length, (first + index + 1) * size) - offset
                row = rows.get(entry - 1) if entry and rows else None
                if not entry or row:
                    if row:
                        self.read_overlay(entry - 1, *row, (offset + start) % size, view[start:end])
                    else:
                        view[start:end] = bytes(end - start)
                    if run_start >= 0:
                        self._chunks.readinto(run_position, view[run_start:run_end])
                        run_start = -1
                    continue
                position = (entry - 1) * size + (offset + start) % size
                if run_start >= 0 and position == run_position + (run_end - run_start):
                    run_end = end
                    continue
                if run_start >= 0:
                    self._chunks.readinto(run_position, view[run_start:run_end])
                run_position, run_start, run_end = position, start, end
            if run_start >= 0:
                self._chunks.readinto(run_position, view[run_start:run_end])

    def _read_one(self, entry: int, rows: dict, in_offset: int, view: memoryview) -> None:
        """Read part of one chunk a leaf entry maps (call under the device's lock)."""
        if not entry:
            view[:] = bytes(len(view))
            return
        row = rows.get(entry - 1)
        if row is None:
            self._chunks.readinto((entry - 1) * self._state.geometry.chunk_size + in_offset, view)
        else:
            self.read_overlay(entry - 1, *row, in_offset, view)

    def entries(self, device: Device, first: int, count: int) -> list[int]:
        """Leaf entries of ``count`` chunks of ``device`` from ``first`` (call under the
        device's lock)."""
        with self._state.lock:
            height = self._state.geometry.height(device.size)
            return lookup_run(self._state.nodes, device.root, height, first, count)

    def plain_runs(
        self, device: Device, offset: int, length: int
    ) -> tuple[list[list[int]], list[tuple[int, memoryview]]]:
        """A range of ``device`` (call under its read lock) as the physically consecutive
        runs of its plain chunks, ``[device offset, data file position, length]``, and the
        rest (overlays, and chunks unmapped meanwhile) read into buffers, ``(device offset,
        bytes)``: what a copy sends to the kernel whole, and what it must write itself."""
        size = self._state.geometry.chunk_size
        first = offset // size
        entries = self.entries(device, first, (offset + length - 1) // size - first + 1)
        rows = self._state.datamap.overlay_rows()
        runs: list[list[int]] = []
        parts: list[tuple[int, memoryview]] = []
        for index, entry in enumerate(entries):
            start = max(offset, (first + index) * size)
            end = min(offset + length, (first + index + 1) * size)
            row = rows.get(entry - 1) if entry and rows else None
            if entry and not row:
                position = (entry - 1) * size + start % size
                if runs and runs[-1][1] + runs[-1][2] == position:
                    runs[-1][2] += end - start
                else:
                    runs.append([start, position, end - start])
                continue
            view = memoryview(bytearray(end - start))
            if row:
                self.read_overlay(entry - 1, *row, start % size, view)
            parts.append((start, view))
        return runs, parts

    def copy_to_file(self, device: Device, offset: int, length: int, fd: int) -> bool:
        """Copy ``device``'s bytes of a range into the file ``fd`` at the same offsets:
        physically consecutive plain chunks in one kernel copy each, overlays (and chunks
        unmapped meanwhile) through a buffer. False when the kernel cannot copy."""
        with device.lock.read():  # the chunks stay this device's while they are copied
            device.require_alive()
            try:
                runs, parts = self.plain_runs(device, offset, length)
                for start, view in parts:
                    fileio.pwrite_full(fd, view, start)
                for start, position, run in runs:
                    self._chunks.copy_out(position, fd, start, run)
            except OSError:
                return False
        return True

    def extents(self, device: Device, offset: int, length: int) -> Extents:
        """``device``'s mapping of a range as ``BlockDevice.extents`` runs: an unmapped
        chunk is a hole reading as zeros. At most ``EXTENT_CHUNKS`` chunks a call (the
        caller asks again for the rest), so a huge device costs what the call returns."""
        size = self._state.geometry.chunk_size
        first = offset // size
        count = min((offset + length - 1) // size - first + 1, EXTENT_CHUNKS)
        with device.lock.read():
            device.require_alive()
            with self._state.lock:
                height = self._state.geometry.height(device.size)
                spans = list(leaf_spans(self._state.nodes, device.root, height, first, count))
        # Whole missing leaves and groups of equal entries at a time, never chunk by chunk:
        # a call on a mostly empty volume covers 65536 chunks, and clients (qemu) ask
        # again after each run.
        runs: Extents = []
        index, end = first, offset + length
        for take, found in spans:
            groups = [(False, take)] if found is None else _groups(found)
            for mapped, chunks in groups:
                start = max(offset, index * size)
                index += chunks
                run, flags = min(end, index * size) - start, 0 if mapped else HOLE | ZERO
                if runs and runs[-1][1] == flags:
                    runs[-1] = (runs[-1][0] + run, flags)
                else:
                    runs.append((run, flags))
        return runs

    def read_overlay(self, chunk: int, base: int, valid: int, in_offset: int, view) -> None:
        """Read bytes of an overlay: valid blocks from it, the others as its base shows them
        (from the first level of the chain of bases that holds each)."""
        size, block = self._state.geometry.chunk_size, self._state.geometry.block_size
        wanted = overlays.block_mask(block, in_offset, len(view))
        if valid & wanted == wanted:  # all from the overlay
            self._chunks.readinto(chunk * size + in_offset, view)
            return
        below = self._state.datamap.chain(base)
        if not valid & wanted and len(below) == 1:
            self._chunks.readinto(base * size + in_offset, view)  # all from a plain base
            return
        for start, end, source in _sources(block, [(chunk, valid), *below], in_offset, len(view)):
            self._chunks.readinto(source * size + start, view[start - in_offset : end - in_offset])

    def read_chunk(self, chunk: int, in_offset: int, view) -> None:
        """Read bytes of one physical chunk as the devices that map it see them."""
        with self._state.lock:
            row = self._state.datamap.overlay(chunk)
        if row is None:
            self._chunks.readinto(chunk * self._state.geometry.chunk_size + in_offset, view)
        else:
            self.read_overlay(chunk, row[0], row[1], in_offset, view)


def _sources(block: int, levels: list[tuple[int, int]], offset: int, length: int):
    """Yield ``(start, end, chunk)`` runs of ``[offset, offset + length)`` of a chunk, each
    read from the first of ``levels`` (``(chunk, valid mask)``, the top first) holding it:
    each level's runs of blocks in turn, found with mask arithmetic (no loop per block)."""
    end = offset + length
    remaining = overlays.block_mask(block, offset, length)
    for chunk, valid in levels:
        mine, remaining = valid & remaining, remaining & ~valid
        while mine:
            low = mine & -mine  # the first block of a run
            above = (mine + low) & ~mine  # the first block after it
            mine ^= above - low
            yield (
                max(offset, (low.bit_length() - 1) * block),
                min(end, (above.bit_length() - 1) * block),
                chunk,
            )
        if not remaining:
            return


def _one_plain_run(entries: list[int], rows: dict) -> bool:
    """True when ``entries`` map consecutive plain chunks, tested in C (no loop here)."""
    first = entries[0]
    if not first or entries[-1] != first + len(entries) - 1:
        return False
    chunks = range(first - 1, first - 1 + len(entries))
    return entries == list(range(first, first + len(entries))) and rows.keys().isdisjoint(chunks)


def _groups(entries: list[int]) -> list[tuple[bool, int]]:
    """``(mapped, count)`` of each run of mapped or unmapped entries, counted in C."""
    return [(mapped, len(list(group))) for mapped, group in itertools.groupby(entries, bool)]
