"""The data map: how many leaf entries and overlays refer to each data chunk.

A chunk's count is the number of leaf entries that map it plus one per overlay whose base it
is. Invariants kept here:
- a base outlives every overlay: an overlay holds one reference on its base, dropped only
  when the overlay is freed or completed (all blocks valid);
- a base may be an overlay, but no chain of bases is deeper than ``overlays.MAX_DEPTH``
  (the redirect that would go deeper makes a plain chunk instead), and a valid mask is
  never 0 nor full;
- a base is never written in place: it is either shared or mapped by no leaf at all;
- a chunk whose count reaches 0 is not handed out again until the commit that freed it has
  stored the metadata (``freed`` then ``reuse_freed``, called by the transaction only).
"""

from evs_driver import exception
from evs_driver.rowstore import overlays
from evs_driver.rowstore.overlays import Overlays
from evs_driver.rowstore.spacemap import SpaceMap


class DataMap:
    """Reference counts of data chunks and the overlay rows that hold bases."""

    def __init__(self, space: SpaceMap, rows: Overlays, block_size: int):
        self._space = space
        self._overlays = rows
        self._block = block_size

    # -- counts ---------------------------------------------------------------------
    def count(self, chunk: int) -> int:
        """References to ``chunk``."""
        return self._space.get(chunk)

    def allocate(self) -> int:
        """Reserve a free chunk (``PoolFull`` when none is left) for ``reference``."""
        return self._space.allocate()

    def unreserve(self, chunk: int) -> None:
        """Hand back a reserved chunk that was never referenced."""
        self._space.release(chunk)

    def reference(self, chunk: int) -> None:
        """One more leaf entry maps ``chunk``."""
        self._space.inc(chunk)

    def drop(self, chunk: int) -> None:
        """One reference fewer; at zero free the chunk, and its overlay's hold on a base."""
        if not self._space.dec(chunk):
            self._space.release(chunk)
            base = self._overlays.remove(chunk)
            if base is not None:
                self.drop(base)

    @property
    def used(self) -> int:
        """Chunks with a reference."""
        return self._space.used

    @property
    def high_water(self) -> int:
        """Chunks ever handed out: everything above reads as zeros."""
        return self._space.high_water

    def free_chunks(self) -> list[int]:
        """Every chunk that nothing refers to, allocatable or awaiting reuse."""
        return self._space.take_pending() + self._space.free_blocks()

    # -- overlays -------------------------------------------------------------------
    def overlay(self, chunk: int) -> tuple[int, int] | None:
        """``(base, valid mask)`` when ``chunk`` is an overlay, else None."""
        return self._overlays.rows.get(chunk)

    def overlay_rows(self) -> dict[int, tuple[int, int]]:
        """Every overlay row, for readers that hold references to what they look up."""
        return self._overlays.rows

    def new_valid(self, entry: int, in_offset: int, length: int) -> int | None:
        """For a write into a mapped, unshared chunk: the overlay blocks it newly makes valid
        (0 for none, or for a plain chunk); None when the chunk is unmapped or shared."""
        if not entry or self._space.get(entry - 1) != 1:
            return None
        row = self._overlays.rows.get(entry - 1)
        if row is None:
            return 0
        return overlays.block_mask(self._block, in_offset, length) & ~row[1]

    def shared_new_valid(self, entry: int, in_offset: int, length: int) -> int | None:
        """``new_valid`` for a write that shares its device with other writers and readers;
        None also where such a write needs the device alone: it covers part of a block
        (whose other bytes it would read, and could write back over another writer's), or
        it would complete its overlay (which drops the base that readers may be reading)."""
        new_valid = self.new_valid(entry, in_offset, length)
        if not new_valid:
            return new_valid
        if in_offset % self._block or length % self._block or self.completes(entry - 1, new_valid):
            return None
        return new_valid

    def completes(self, chunk: int, new_valid: int) -> bool:
        """Whether marking ``new_valid`` in overlay ``chunk`` makes every block valid."""
        return self._overlays.rows[chunk][1] | new_valid == overlays.FULL

    def chain(self, chunk: int) -> list[tuple[int, int]]:
        """``(chunk, valid mask)`` of each level a read of ``chunk`` takes blocks from, the
        top first, down to the plain chunk at the bottom (with every block valid).

        Safe without the metadata lock for a chunk the caller holds a reference to: the rows
        of it and of its bases change only when it is written in place (a row is replaced
        whole) or freed."""
        rows, levels = self._overlays.rows, []
        row = rows.get(chunk)
        while row is not None:
            if len(levels) == overlays.MAX_DEPTH:
                raise exception.PoolCorrupt(
                    path=self._space.name,
                    reason=f"overlay chunk {levels[0][0]} has bases deeper than "
                    f"{overlays.MAX_DEPTH} overlays",
                )
            levels.append((chunk, row[1]))
            chunk = row[0]
            row = rows.get(chunk)
        levels.append((chunk, overlays.FULL))
        return levels

    def redirect_valid(self, entry: int, in_offset: int, length: int) -> int:
        """The valid blocks of the overlay a write redirected away from leaf entry ``entry``
        makes, whose base is the old chunk (an overlay too, perhaps); 0 for a whole chunk:
        nothing to keep, every block written, or a chain already ``MAX_DEPTH`` deep, when
        the writer copies the chunk as its devices see it (once in ``MAX_DEPTH + 1``
        rounds of snapshot-then-write) and the chain can go."""
        if not entry:
            return 0
        valid = overlays.block_mask(self._block, in_offset, length)
        if valid == overlays.FULL or self._depth(entry - 1) == overlays.MAX_DEPTH:
            return 0
        return valid

    def _depth(self, chunk: int) -> int:
        """How many overlays deep ``chunk``'s chain is (counting up to ``MAX_DEPTH``)."""
        rows, depth = self._overlays.rows, 0
        row = rows.get(chunk)
        while row is not None and depth < overlays.MAX_DEPTH:
            depth += 1
            row = rows.get(row[0])
        return depth

    def extend_overlay(self, chunk: int, new_valid: int) -> None:
        """Mark blocks of an unshared overlay valid; at full it becomes a plain chunk."""
        base, valid = self._overlays.rows[chunk]
        valid |= new_valid
        if valid == overlays.FULL:
            self._overlays.remove(chunk)
            self.drop(base)
        else:
            self._overlays.set(chunk, base, valid)

    def redirected(self, target: int, old_entry: int, new_valid: int) -> None:
        """A leaf entry that mapped ``old_entry`` now maps chunk ``target``: settle counts.

        With ``new_valid`` the target is an overlay of the old chunk, and the leaf's
        reference on that passes to the new overlay.
        """
        self.reference(target)
        if not old_entry:
            return
        if new_valid:
            self._overlays.set(target, old_entry - 1, new_valid)
        else:
            self.drop(old_entry - 1)

    # -- accounting -----------------------------------------------------------------
    def exclusive_chunks(self, entry: int) -> int:
        """Chunks freed if the one leaf entry ``entry`` went away (with the bases it alone holds)."""
        if not entry or self._space.get(entry - 1) != 1:
            return 0
        freed = 0
        for chunk, _ in self.chain(entry - 1):
            if self._space.get(chunk) != 1:
                break
            freed += 1
        return freed

    # -- the transaction's side -----------------------------------------------------------
    def pending(self) -> bool:
        """True when a change awaits a commit."""
        return self._space.pending() or self._overlays.pending()

    def changes(self) -> tuple[list[tuple[int, bytes]], list[tuple[int, int, int]], list[int]]:
        """Changed count pages, overlay rows to store and overlay rows to forget."""
        stored, forgotten = self._overlays.changes()
        return self._space.changed_pages(), stored, forgotten

    def hand_over(self) -> tuple[set[int], set[int]]:
        """Take what ``changes`` returned for a commit that stores it outside the lock."""
        return self._space.hand_over(), self._overlays.hand_over()

    def take_back(self, handed: tuple[set[int], set[int]]) -> None:
        """A commit of ``hand_over``'s changes failed: they are changed again."""
        pages, chunks = handed
        self._space.take_back(pages)
        self._overlays.take_back(chunks)

    def freed(self) -> list[int]:
        """Chunks freed and not yet reusable: to be zeroed once a commit has stored that."""
        return self._space.take_pending()

    def reuse_freed(self, count: int | None = None) -> None:
        """Let the chunks ``freed`` returned (its first ``count``) be allocated again (they
        now read as zeros)."""
        self._space.recycle(count)
