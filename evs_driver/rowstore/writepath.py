"""The write path: in place where nothing else sees the chunk, redirected (or as an overlay)
where something does.

Invariants kept here:
- a chunk is overwritten in place only when its own count and every node above it say
  nothing else can see it (``tree.exclusive_leaf`` and ``DataMap.new_valid``);
- a write's data reaches the data file before the mapping that points at it changes, and a
  new chunk is fully written (or its unwritten blocks are its base's, as an overlay) before
  it is mapped, and an overlay's block is marked valid only after it is written, so no
  device ever reads data it never had;
- only a writer that has the device alone completes an overlay, which drops its base:
  readers beside a shared writer may be reading that base;
- a write that fails hands back every chunk it reserved and changes no mapping.
"""

import dataclasses

from evs_driver.rowstore import tree
from evs_driver.rowstore.chunkstore import ChunkStore
from evs_driver.rowstore.devicetable import Device
from evs_driver.rowstore.readpath import ReadPath
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.transaction import Transaction


@dataclasses.dataclass(slots=True, frozen=True)
class Stored:
    """Bytes already in the data file that a write takes instead of a buffer: a copy from
    another device of the pool, which the kernel makes (``ChunkStore.copy_in``)."""

    position: int
    length: int

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, part: slice) -> "Stored":
        start, stop, _ = part.indices(self.length)
        return Stored(self.position + start, stop - start)


@dataclasses.dataclass(slots=True)
class Piece:
    """The part of one write that falls in one chunk, and where it goes."""

    vchunk: int  # the device's chunk number
    in_offset: int  # where in the chunk the data starts
    data: memoryview | Stored
    target: int  # the physical chunk written
    old_entry: int  # what the leaf mapped before (chunk + 1, or 0)
    #: The leaf to update when the mapping changes (a redirect); None when written in place.
    leaf: tree.WritableLeaf | None
    #: Overlay blocks the target newly holds (0: a plain chunk, or nothing new).
    new_valid: int


class WritePath:
    """Writes to volumes."""

    def __init__(
        self, state: PoolState, chunks: ChunkStore, reader: ReadPath, transaction: Transaction
    ):
        self._state = state
        self._chunks = chunks
        self._reader = reader
        self._transaction = transaction

    def write(self, device: Device, offset: int, view: memoryview | Stored) -> None:
        """Write ``view`` at ``offset`` of a volume (a non-empty range the caller checked)."""
        # Writes into unshared chunks, in place or marking whole blocks of an overlay valid,
        # share the device with reads and each other, racing only like a disk's overlapping
        # writes; anything that allocates, redirects or completes an overlay takes the device
        # alone. Right after a redirect the next write probably redirects too, so skip the
        # shared attempt that would fail.
        done = False
        if not device.remapping:
            with device.lock.read():
                device.require_alive()
                plan = self._plan_in_place(device, offset, view)
                if plan is not None:
                    self._write_data(plan)
                    done = self._mark_valid(plan)
        if not done:
            with device.lock.write():
                device.require_alive()
                device.remapping = self.write_exclusive(device, offset, view)

    def _pieces(self, offset: int, view: memoryview | Stored) -> list[tuple]:
        """``(vchunk, in_offset, data)`` for each chunk the write touches."""
        size = self._state.geometry.chunk_size
        end = offset + len(view)
        first = offset // size
        if (end - 1) // size == first:  # most writes: one chunk, no slicing
            return [(first, offset - first * size, view)]
        pieces = []
        for vchunk in range(first, (end - 1) // size + 1):
            start = max(offset, vchunk * size)
            part = view[start - offset : min(end, (vchunk + 1) * size) - offset]
            pieces.append((vchunk, start - vchunk * size, part))
        return pieces

    def _leaf(
        self, leaves: dict, device: Device, height: int, vchunk: int
    ) -> tree.WritableLeaf | None:
        """The exclusive leaf of ``vchunk`` (looked up once per leaf a write touches)."""
        key = vchunk >> self._state.nodes.bits
        if key not in leaves:
            leaves[key] = tree.exclusive_leaf(self._state.nodes, device.root, height, vchunk)
        return leaves[key]

    def _plan_in_place(self, device: Device, offset: int, view: memoryview) -> list | None:
        """The pieces of a write if every one can be written beside other writers and
        readers of the device (``DataMap.shared_new_valid``), else None."""
        mask, datamap = self._state.nodes.mask, self._state.datamap
        plan, leaves = [], {}
        height = self._state.geometry.height(device.size)
        with self._state.lock:
            for vchunk, in_offset, data in self._pieces(offset, view):
                leaf = self._leaf(leaves, device, height, vchunk)
                entry = leaf.entries[vchunk & mask] if leaf else 0
                new_valid = datamap.shared_new_valid(entry, in_offset, len(data))
                if new_valid is None:
                    return None
                plan.append(Piece(vchunk, in_offset, data, entry - 1, entry, None, new_valid))
        return plan

    def _mark_valid(self, plan: list[Piece]) -> bool:
        """Mark the overlay blocks a shared write wrote valid; False, marking none, when
        other writers' blocks have meanwhile left one of them to complete its overlay,
        which the write then does again with the device alone."""
        extending = [piece for piece in plan if piece.new_valid]
        if not extending:
            return True
        datamap = self._state.datamap
        with self._state.lock:
            if any(datamap.completes(piece.target, piece.new_valid) for piece in extending):
                return False
            for piece in extending:
                datamap.extend_overlay(piece.target, piece.new_valid)
        return True

    def write_exclusive(self, device: Device, offset: int, view: memoryview) -> bool:
        """Write under the device's exclusive lock; return whether it redirected."""
        with self._state.lock:
            plan = self._plan(device, offset, view)
        try:
            self._write_data(plan)
        except BaseException:
            with self._state.lock:
                self._release_new(plan)
            raise
        redirected = False
        with self._state.lock:
            for piece in plan:
                self._apply(device, piece)
                redirected = redirected or piece.leaf is not None
            self._state.devices.touch(device)
        self.commit_if_crowded()
        return redirected

    def copy_within(self, source: Device, target: Device, offset: int, length: int) -> None:
        """Write ``source``'s bytes of a range at the same offsets of volume ``target``:
        one write (one plan) per physically consecutive run of plain chunks, which the
        kernel copies; overlays, and chunks unmapped meanwhile, through a buffer."""
        with source.lock.read():  # its chunks stay as they are while they are copied
            source.require_alive()
            runs, buffered = self._reader.plain_runs(source, offset, length)
            parts: list[tuple[int, Stored | memoryview]] = list(buffered)  # (offset, bytes)
            # The kernel's copies read what is not cached a pipe's worth at a time, and the
            # data file is opened for random access: ask for each run whole, up front.
            for start, position, run in runs:
                self._chunks.will_read(position, run)
                parts.append((start, Stored(position, run)))
            for start, data in parts:
                self.write(target, start, data)

    def commit_if_crowded(self) -> None:
        """Commit when changed nodes fill half the node cache (only a commit lets them go).

        Call where the metadata is whole (no write half applied); never needed under the
        default bound, where a commit interval's changes fit many times over."""
        if self._state.nodes.crowded():
            self._transaction.commit()

    def _plan(self, device: Device, offset: int, view: memoryview) -> list[Piece]:
        """Decide where each piece goes, reserving new chunks (under the metadata lock)."""
        nodes, datamap = self._state.nodes, self._state.datamap
        plan: list[Piece] = []
        leaves: dict = {}
        height = self._state.geometry.height(device.size)
        try:
            for vchunk, in_offset, data in self._pieces(offset, view):
                leaf = self._leaf(leaves, device, height, vchunk)
                entry = leaf.entries[vchunk & nodes.mask] if leaf else 0
                new_valid = datamap.new_valid(entry, in_offset, len(data))
                if new_valid is None and leaf is None:
                    path = tree.writable_path(nodes, device.root, height, vchunk)
                    device.root = path[0]
                    leaf = leaves[vchunk >> nodes.bits] = tree.WritableLeaf(nodes, path[-1])
                    self._state.devices.touch(device)
                    entry = leaf.entries[vchunk & nodes.mask]
                    new_valid = datamap.new_valid(entry, in_offset, len(data))
                if new_valid is not None:  # in place
                    plan.append(Piece(vchunk, in_offset, data, entry - 1, entry, None, new_valid))
                    continue
                valid = datamap.redirect_valid(entry, in_offset, len(data))
                self._transaction.before_allocating()
                plan.append(Piece(vchunk, in_offset, data, datamap.allocate(), entry, leaf, valid))
        except BaseException:
            self._release_new(plan)
            raise
        return plan

    def _apply(self, device: Device, piece: Piece) -> None:
        """Point the mapping at what ``_write_data`` wrote (under the metadata lock)."""
        if piece.leaf is None:
            if piece.new_valid:
                self._state.datamap.extend_overlay(piece.target, piece.new_valid)
            return
        piece.leaf.entries[piece.vchunk & self._state.nodes.mask] = piece.target + 1
        piece.leaf.mark_dirty()  # again: a commit since planning may have written it clean
        if not piece.old_entry:
            device.mapped += 1
        self._state.datamap.redirected(piece.target, piece.old_entry, piece.new_valid)

    def _release_new(self, plan: list[Piece]) -> None:
        for piece in plan:
            if piece.leaf is not None:
                self._state.datamap.unreserve(piece.target)

    def _write_data(self, plan: list[Piece]) -> None:
        """Write the planned pieces, each through a buffer or as a kernel copy.

        One ``pwrite`` per chunk, never one across chunks: the page cache sizes a folio by
        the write that creates it, and a small overwrite later walks every block of its
        folio (ext4 with large folios), so chunk-sized folios keep 4 KiB writes cheap.
        Kernel copies are another matter: they write a pipe's worth at a time whatever they
        are asked, so pieces copied from consecutive bytes into consecutive chunks go to the
        kernel as one copy (``ChunkStore.copy_in``).
        """
        size = self._state.geometry.chunk_size
        run: list[int] = []  # [source, position, length] of a kernel copy not yet asked for
        for piece in plan:
            copy = self._kernel_copy(piece) if isinstance(piece.data, Stored) else []
            # A plan's pieces are consecutive slices of one write's bytes, so only where
            # they land can break a run.
            if copy and run and run[1] + run[2] == copy[1]:
                run[2] += copy[2]
                continue
            if run:
                self._chunks.copy_in(*run)
            run = copy
            if copy:
                continue
            if piece.leaf is None and not piece.new_valid:  # in place, bytes as they are
                self._chunks.write(piece.target * size + piece.in_offset, piece.data)
            else:
                self._write_piece(piece)
        if run:
            self._chunks.copy_in(*run)

    def _kernel_copy(self, piece: Piece) -> list[int]:
        """``[source, position, length]`` when the kernel can copy ``piece`` (``Stored``) as
        it is (bytes of the data file going where nothing needs merging), else empty."""
        size, data = self._state.geometry.chunk_size, piece.data
        if piece.new_valid or self._merging(piece, len(data)):
            return []
        return [data.position, piece.target * size + piece.in_offset, len(data)]

    def _merging(self, piece: Piece, length: int) -> bool:
        """Whether a redirect of part of a mapped chunk must bring along its other bytes."""
        size = self._state.geometry.chunk_size
        return piece.leaf is not None and bool(piece.old_entry) and length < size

    def _write_piece(self, piece: Piece) -> None:
        """Write one piece through a buffer: into a fresh chunk, as an overlay (maybe in
        place), or redirected whole with the old chunk's other bytes."""
        size = self._state.geometry.chunk_size
        in_offset, data = piece.in_offset, piece.data
        old = piece.old_entry - 1
        if isinstance(data, Stored):
            buffer = memoryview(bytearray(len(data)))
            self._chunks.readinto(data.position, buffer)
            data = buffer
        if piece.new_valid:
            # Overlay blocks are written whole; a partly written block gets the rest of its
            # bytes from what the old chunk shows there.
            in_offset, data = self.whole_blocks(old, in_offset, data)
        elif self._merging(piece, len(data)):
            merged = bytearray(size)
            self._reader.read_chunk(old, 0, memoryview(merged))
            merged[in_offset : in_offset + len(data)] = data
            in_offset, data = 0, merged
        self._chunks.write(piece.target * size + in_offset, data)

    def whole_blocks(self, source: int, in_offset: int, data) -> tuple[int, object]:
        """``data`` widened to whole overlay blocks, the edges read from chunk ``source``."""
        block = self._state.geometry.block_size
        end = in_offset + len(data)
        low, high = in_offset // block * block, -(-end // block) * block
        if low == in_offset and high == end:
            return in_offset, data
        widened = memoryview(bytearray(high - low))
        if low < in_offset:
            self._reader.read_chunk(source, low, widened[:block])
        if high > end:
            self._reader.read_chunk(source, high - block, widened[-block:])
        widened[in_offset - low : end - low] = data
        return low, widened
