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

from evs_driver import exception
from evs_driver.backends import base
from evs_driver.blockdev import Extents

BLKGETSIZE64 = 0x80081272
BLKDISCARD = 0x1277
_ZERO_BLOCK = 1024 * 1024
_NO_SPACE = (errno.ENOSPC, errno.EIO)


class RawDevice(base.DeviceContext):
    """An open block device node; ``on_no_space`` turns ENOSPC/EIO into a clear error."""

    def __init__(self, path: str, read_only: bool, discard_granularity: int, on_no_space=None):
        self.path = path
        self._read_only = read_only
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
        (self._size,) = struct.unpack("Q", buf)

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        """True for snapshots."""
        return self._read_only

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise exception.OutOfRange(
                device=self.path, offset=offset, length=length, size=self._size
            )

    def _check_writable(self) -> None:
        if self._read_only:
            raise exception.ReadOnlyDevice(name=self.path)

    def _io_error(self, exc: OSError, what: str) -> exception.EVSError:
        if exc.errno in _NO_SPACE and self._on_no_space is not None:
            full = self._on_no_space(exc)
            if full is not None:
                return full
        return exception.BackendError(backend=self.path, reason=f"{what} failed: {exc.strerror}")

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` with the bytes at ``offset``."""
        view = memoryview(buf).cast("B")
        self._check(offset, len(view))
        done = 0
        while done < len(view):
            try:
                n = os.preadv(self._fd, [view[done:]], offset + done)
            except OSError as exc:
                raise self._io_error(exc, "read") from exc
            if n == 0:
                raise exception.BackendError(backend=self.path, reason="short read at the end")
            done += n

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        buf = bytearray(length)
        self.readinto(offset, buf)
        return bytes(buf)

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is on disk before returning."""
        self._check_writable()
        view = memoryview(data).cast("B")
        self._check(offset, len(view))
        done = 0
        while done < len(view):
            try:
                done += os.pwritev(self._fd, [view[done:]], offset + done)
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
        self._check_writable()
        self._check(offset, length)
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

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make the range read as zeros, unmapping what can be unmapped."""
        self.discard(offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise self._io_error(exc, "flush") from exc

    def extents(self, offset: int, length: int) -> Extents:
        """The whole range as allocated data: the thin pool's mapping is not read (yet)."""
        self._check(offset, length)
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
