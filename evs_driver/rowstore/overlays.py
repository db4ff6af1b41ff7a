"""Overlays: chunks that hold only the blocks written since their data was shared.

The first write into a chunk that a snapshot shares must not change what the snapshot
sees, so it goes to a new chunk. Copying the whole old chunk there would cost 16 times a
4 KiB write on a 64 KiB chunk; instead the new chunk gets only the written blocks (each a
sixteenth of a chunk) and becomes an *overlay* of the old chunk, its *base*: reads take
the blocks marked valid from the overlay and the rest from the base.

A write into an overlay that a snapshot shares makes an overlay of that overlay, so it too
writes only its own blocks; a chain of bases is at most ``MAX_DEPTH`` overlays deep, and the
write that would go deeper copies the chunk as its devices see it into a plain chunk
instead (one read of each level and one chunk-sized write), which lets the chain go once the
snapshots that hold it do. A read thus looks at most ``MAX_DEPTH`` rows up (in memory) before the
one ``pread`` of each run of blocks, whatever the number of snapshots.

The rows kept here are changed only by the data map (``datamap.py``), which keeps their
invariants: a base outlives every overlay that reads it, no chain of bases is deeper than
``MAX_DEPTH`` (nor a cycle), and a valid mask is never 0 nor full.
"""

BLOCKS = 16
FULL = (1 << BLOCKS) - 1
#: Overlays a chain of bases may stack on its plain chunk. Each level costs a read one dict
#: lookup; each copy into a plain chunk (once per MAX_DEPTH + 1 rounds of snapshot-then-write
#: on a chunk) costs a chunk-sized write.
MAX_DEPTH = 4


def block_mask(block_size: int, offset: int, length: int) -> int:
    """The blocks that bytes ``[offset, offset + length)`` of a chunk touch, as a mask."""
    first = offset // block_size
    last = (offset + length - 1) // block_size
    return ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)


class Overlays:
    """The overlay rows of a pool, with the set changed since the last commit."""

    def __init__(self, rows: dict[int, tuple[int, int]]):
        #: overlay chunk -> (base chunk, valid-block mask)
        self.rows = rows
        self._dirty: set[int] = set()

    def set(self, chunk: int, base: int, valid: int) -> None:
        """Make ``chunk`` an overlay of ``base`` with the blocks in ``valid``."""
        self.rows[chunk] = (base, valid)
        self._dirty.add(chunk)

    def remove(self, chunk: int) -> int | None:
        """Forget ``chunk``'s row; return its base, or None when it was no overlay."""
        row = self.rows.pop(chunk, None)
        if row is None:
            return None
        self._dirty.add(chunk)
        return row[0]

    def changes(self) -> tuple[list[tuple[int, int, int]], list[int]]:
        """Rows to store and chunks to forget since the last commit."""
        stored = [(c, *self.rows[c]) for c in self._dirty if c in self.rows]
        forgotten = [c for c in self._dirty if c not in self.rows]
        return stored, forgotten

    def pending(self) -> bool:
        """True when a row changed since the last commit."""
        return bool(self._dirty)

    def hand_over(self) -> "set[int]":
        """Take the changed rows' chunks for a commit that stores them outside the lock."""
        chunks, self._dirty = self._dirty, set()
        return chunks

    def take_back(self, chunks: "set[int]") -> None:
        """A commit of ``hand_over``'s rows failed: they are changed again."""
        self._dirty |= chunks
