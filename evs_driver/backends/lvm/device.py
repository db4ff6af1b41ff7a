"""A ``BlockDevice`` over a Linux block device node (an LV's ``/dev/<vg>/<lv>``).

I/O goes through the page cache (``preadv``/``pwritev``), ``flush`` is ``fdatasync``.
Discard unmaps whole thin-pool chunks with ``BLKDISCARD`` (dm-thin then reads them as
zeros) and writes zeros over the unaligned edges, because dm-thin ignores partial-chunk
discards; where the device refuses discards, zeros are written instead.
"""

import errno
import fcntl
import os
import struct

from evs_driver import exception, fileio
from evs_driver.blockdev import DeviceBase, Extents

BLKGETSIZE64 = 0x80081272
BLKDISCARD = 0x1277
_ZERO_BLOCK = 1024 * 1024
_NO_SPACE = (errno.ENOSPC, errno.EIO)


class RawDevice(DeviceBase):
    """An open block device node; ``on_no_space`` turns ENOSPC/EIO into a clear error."""

    def __init__(self, path: str, read_only: bool, discard_granularity: int, on_no_space=None):
        self.path = path
        self._granularity = max(discard_granularity, 512)
        self._on_no_space = on_no_space
        flags = os.O_RDONLY if read_only else os.O_RDWR
        try:
            self._fd = os.open(path, flags | os.O_CLOEXEC)
        except OSError as exc:
            raise exception.BackendError(
                backend=path, reason=f"cannot open the device: {exc.strerror}"
            ) from exc
        buf = bytearray(8)
        fcntl.ioctl(self._fd, BLKGETSIZE64, buf)
        super().__init__(path, struct.unpack("Q", buf)[0], read_only)

    def _io_error(self, exc: OSError, what: str) -> exception.EVSError:
        if exc.errno in _NO_SPACE and self._on_no_space is not None:
            full = self._on_no_space(exc)
            if full is not None:
                return full
        return exception.BackendError(backend=self.path, reason=f"{what} failed: {exc.strerror}")

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` with the bytes at ``offset``."""
        view = memoryview(buf).cast("B")
        self.check_range(offset, len(view))
        try:
            done = fileio.pread_full(self._fd, view, offset)
        except OSError as exc:
            raise self._io_error(exc, "read") from exc
        if done < len(view):
            raise exception.BackendError(backend=self.path, reason="short read at the end")

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is on disk before returning."""
        self.check_writable(offset, len(data))
        try:
            fileio.pwrite_full(self._fd, data, offset)
        except OSError as exc:
            raise self._io_error(exc, "write") from exc
        if fua:
            self.flush()

    def _write_zeros(self, offset: int, length: int) -> None:
        zeros = bytes(min(length, _ZERO_BLOCK))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self.write(offset, memoryview(zeros)[:n])
            offset += n

    def discard(self, offset: int, length: int) -> None:
        """Unmap whole chunks of the range, zero its unaligned edges; it then reads as zeros."""
        self.check_writable(offset, length)
        g = self._granularity
        start = min(-(-offset // g) * g, offset + length)
        end = max((offset + length) // g * g, start)
        self._write_zeros(offset, start - offset)
        self._write_zeros(end, offset + length - end)
        if end > start:
            try:
                # Writes still in the page cache would land after the discard: flush first.
                self.flush()
                fcntl.ioctl(self._fd, BLKDISCARD, struct.pack("QQ", start, end - start))
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
                    raise self._io_error(exc, "discard") from exc
                self._write_zeros(start, end - start)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise self._io_error(exc, "flush") from exc

    def extents(self, offset: int, length: int) -> Extents:
        """The whole range as allocated data: the thin pool's mapping is not read (yet)."""
        self.check_range(offset, length)
        return [(length, 0)]

    def close(self) -> None:
        """Flush (when writable) and close the device node."""
        if self._fd < 0:
            return
        try:
            if not self._read_only:
                self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1
