"""A ``BlockDevice`` over a raw image file or a block device node.

Positional I/O only (``preadv``/``pwrite``), so one instance may serve many threads.
"""

import os
import stat

from evs_driver import fileio
from evs_driver.blockdev import HOLE, MAX_EXTENTS, ZERO, DeviceBase, Extents


class FileDevice(DeviceBase):
    """A disk stored in a raw file: reads, writes, hole punching and ``fdatasync``."""

    #: Every handle on the file shares the kernel's page cache, and ``fdatasync`` on any
    #: of them makes all acknowledged writes durable, so NBD multi-conn is safe.
    can_multi_conn = True
    #: Positional I/O on one descriptor: a flush may run beside reads and writes.
    concurrent_flush = True

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self._fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        # lseek works for block device nodes too, where st_size is 0.
        super().__init__(path, os.lseek(self._fd, 0, os.SEEK_END), read_only)
        self._can_punch = True

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` from ``offset``."""
        view = memoryview(buf).cast("B")
        self.check_range(offset, len(view))
        done = fileio.pread_full(self._fd, view, offset)
        if done < len(view):
            # The file shrank under us or is sparse past its end: that reads as zeros.
            view[done:] = bytes(len(view) - done)

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` durable before returning."""
        self.check_writable(offset, len(data))
        fileio.pwrite_full(self._fd, data, offset)
        if fua:
            os.fdatasync(self._fd)

    def discard(self, offset: int, length: int) -> None:
        """Punch a hole; the range reads as zeros afterwards."""
        self.check_writable(offset, length)
        if not length:
            return
        if self._can_punch and fileio.punch_hole(self._fd, offset, length):
            return
        self._can_punch = False  # e.g. a block device or tmpfs without hole support
        fileio.write_zeros(self._fd, offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        os.fdatasync(self._fd)

    def plain_file(self) -> int | None:
        """The file's descriptor when it is a regular file opened for writing."""
        if self._read_only or not stat.S_ISREG(os.fstat(self._fd).st_mode):
            return None
        return self._fd

    def copy_to_file(self, offset: int, length: int, fd: int) -> bool:
        """Copy a range into ``fd`` at the same offsets inside the kernel."""
        self.check_range(offset, length)
        if not fileio.same_file_system(self._fd, fd):
            return False
        try:
            fileio.copy_range(self._fd, offset, fd, offset, length)
        except OSError:
            return False
        return True

    def extents(self, offset: int, length: int) -> Extents:
        """Holes (reading as zeros) and data of the range, from the file system."""
        self.check_range(offset, length)
        runs = fileio.data_runs(self._fd, offset, offset + length, MAX_EXTENTS)
        if not runs:
            return [(length, 0)]  # a block device, or a file system that cannot tell
        return [(run, HOLE | ZERO if is_hole else 0) for run, is_hole in runs]

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
