"""A ``BlockDevice`` over a raw image file or a block device node.

Positional I/O only (``preadv``/``pwrite``), so one instance may serve many threads.
"""

import os

from evs_driver import exception, fileio
from evs_driver.blockdev import HOLE, ZERO, Extents
from evs_driver.nbd.metacontext import MAX_EXTENTS


class FileDevice:
    """A disk stored in a raw file: reads, writes, hole punching and ``fdatasync``."""

    #: Every handle on the file shares the kernel's page cache, and ``fdatasync`` on any
    #: of them makes all acknowledged writes durable, so NBD multi-conn is safe.
    can_multi_conn = True

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self._read_only = read_only
        self._fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        # lseek works for block device nodes too, where st_size is 0.
        self._size = os.lseek(self._fd, 0, os.SEEK_END)
        self._can_punch = True

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        """True when opened read-only."""
        return self._read_only

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` from ``offset``."""
        self._check(offset, len(buf))
        done = os.preadv(self._fd, (buf,), offset)
        if done < len(buf):
            self._finish_read(offset, memoryview(buf), done)

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        buf = bytearray(length)
        self.readinto(offset, buf)
        return bytes(buf)

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` durable before returning."""
        self._check_writable(offset, len(data))
        done = os.pwrite(self._fd, data, offset)
        if done < len(data):
            view = memoryview(data)
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
        if fua:
            os.fdatasync(self._fd)

    def discard(self, offset: int, length: int) -> None:
        """Punch a hole; the range reads as zeros afterwards."""
        self._check_writable(offset, length)
        if not length:
            return
        if self._can_punch and fileio.punch_hole(self._fd, offset, length):
            return
        self._can_punch = False  # e.g. a block device or tmpfs without hole support
        fileio.write_zeros(self._fd, offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make a range read as zeros, unmapping it where the file system can."""
        self.discard(offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        os.fdatasync(self._fd)

    def extents(self, offset: int, length: int) -> Extents:
        """Holes (reading as zeros) and data of the range, from the file system."""
        self._check(offset, length)
        runs = fileio.data_runs(self._fd, offset, offset + length, MAX_EXTENTS)
        if not runs:
            return [(length, 0)]  # a block device, or a file system that cannot tell
        return [(run, HOLE | ZERO if is_hole else 0) for run, is_hole in runs]

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- helpers -------------------------------------------------------------------------
    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise exception.OutOfRange(
                device=self.path, offset=offset, length=length, size=self._size
            )

    def _check_writable(self, offset: int, length: int) -> None:
        if self._read_only:
            raise exception.ReadOnlyDevice(name=self.path)
        self._check(offset, length)

    def _finish_read(self, offset: int, view: memoryview, done: int) -> None:
        while done < len(view):
            got = os.preadv(self._fd, (view[done:],), offset + done)
            if not got:
                # The file shrank under us or is sparse past its end: that reads as zeros.
                view[done:] = bytes(len(view) - done)
                return
            done += got
