"""The data file: fixed-size chunks in one sparse file.

Invariant kept with the pool: every chunk that is free reads as zeros (freed chunks are
punched before reuse, and an unclean shutdown punches all free chunks at the next open),
so a newly mapped chunk never exposes another device's old data.
"""

import errno
import os

from evs_driver import exception, fileio

_ZEROS = bytes(1 << 20)


class ChunkStore:
    """Positional I/O on the data file, in chunk units."""

    def __init__(self, path: str, chunk_size: int, capacity_chunks: int, pool_name: str):
        self.path = path
        self.chunk_size = chunk_size
        self.pool_name = pool_name
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        # A volume's chunks lie anywhere in the file, so the kernel's sequential readahead
        # would guess wrong; worse, it fills the cache with large folios that make every
        # later small overwrite walk the whole folio. Reads ask for exactly what they need.
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        self.resize(capacity_chunks)
        self._can_punch = True

    def resize(self, capacity_chunks: int) -> None:
        if os.fstat(self.fd).st_size < capacity_chunks * self.chunk_size:
            os.ftruncate(self.fd, capacity_chunks * self.chunk_size)

    def close(self) -> None:
        os.close(self.fd)

    def _full(self, err: OSError) -> exception.EVSError:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return exception.PoolFull(pool=self.pool_name, detail=f"data file: {err.strerror}")
        return exception.EVSError(f"I/O error on {self.path}: {err}")

    def readinto(self, position: int, view: memoryview) -> None:
        """Fill ``view`` from byte ``position`` of the file."""
        done = os.preadv(self.fd, [view], position)
        if done < len(view):  # only past EOF, which the pool never reads
            view[done:] = _ZEROS[: len(view) - done]

    def write(self, position: int, data) -> None:
        try:
            done = os.pwrite(self.fd, data, position)
            while done < len(data):
                done += os.pwrite(self.fd, memoryview(data)[done:], position + done)
        except OSError as err:
            raise self._full(err) from err

    def zero(self, position: int, length: int) -> None:
        """Make a byte range read as zeros, giving its space back to the file system."""
        try:
            if self._can_punch and fileio.punch_hole(self.fd, position, length):
                return
            self._can_punch = False
            fileio.write_zeros(self.fd, position, length)
        except OSError as err:
            raise self._full(err) from err

    def zero_chunks(self, chunks: list[int]) -> None:
        """Zero whole chunks, one call per run of consecutive chunk numbers."""
        for first, count in runs(sorted(chunks)):
            self.zero(first * self.chunk_size, count * self.chunk_size)

    def sync(self) -> None:
        os.fdatasync(self.fd)


def runs(sorted_numbers: list[int]):
    """Yield (first, count) for each run of consecutive numbers."""
    start = previous = None
    for number in sorted_numbers:
        if start is None:
            start = previous = number
        elif number == previous + 1:
            previous = number
        else:
            yield start, previous - start + 1
            start = previous = number
    if start is not None:
        yield start, previous - start + 1
