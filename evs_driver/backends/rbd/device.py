"""A ``BlockDevice`` over an open ``rbd.Image`` (the data path of NBD exports and copies).

Writes go to librbd asynchronously and are acknowledged at once, a volatile write cache
(``inflight``: overlapping I/O waits, and a lost write fails every later write and flush).
``flush`` waits for them all and then flushes librbd (its cache, and the OSDs' replies:
RADOS writes are durable once acknowledged); FUA is a synchronous write and a flush.
Discard and write-zeroes go to librbd, which deletes or truncates whole and partial
objects, so the range reads as zeros.
"""

import os

from evs_driver import exception
from evs_driver.backends.rbd.inflight import InFlight
from evs_driver.blockdev import HOLE, MAX_EXTENTS, ZERO, DeviceBase, Extents


class RbdDevice(DeviceBase):
    """One open image (a volume's, or a snapshot's read-only) as a ``BlockDevice``."""

    def __init__(self, image, label: str, read_only: bool, errors):
        """``errors(action)`` is the cluster's error translator (``Cluster.errors``)."""
        with errors(f"reading the size of {label}"):
            size = image.size()
        super().__init__(label, size, read_only)
        self._image = image
        self.label = label
        self._errors = errors
        self._inflight = InFlight()

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` with the bytes at ``offset``."""
        view = memoryview(buf).cast("B")
        self.check_range(offset, len(view))
        if not view:
            return
        with self._errors(f"reading {self.label}"):
            self._inflight.wait_range(offset, len(view))
            data = self._image.read(offset, len(view))
        view[:] = data

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        self.check_range(offset, length)
        if not length:
            return b""
        with self._errors(f"reading {self.label}"):
            self._inflight.wait_range(offset, length)
            return self._image.read(offset, length)

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable before returning."""
        payload = bytes(data)
        self.check_writable(offset, len(payload))
        with self._errors(f"writing {self.label}"):
            self._raise_lost_write()
            if fua:
                self._inflight.wait_range(offset, len(payload))
                self._write_now(offset, payload)
                self._image.flush()
                return
            self._inflight.issue(
                offset, payload, lambda: self._image.aio_write(payload, offset, _ignore)
            )

    def _write_now(self, offset: int, payload: bytes) -> None:
        written = self._image.write(payload, offset)
        if written != len(payload):
            raise exception.BackendError(
                backend=self.label, reason=f"short write: {written} of {len(payload)} bytes"
            )

    def _raise_lost_write(self) -> None:
        code = self._inflight.error
        if code:
            raise OSError(code, f"a write acknowledged earlier failed: {os.strerror(code)}")

    def discard(self, offset: int, length: int) -> None:
        """Unmap the range; it reads as zeros afterwards."""
        self.check_writable(offset, length)
        if length:
            with self._errors(f"discarding in {self.label}"):
                self._inflight.wait_range(offset, length)
                self._image.discard(offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make the range read as zeros (librbd unmaps what it can)."""
        self.check_writable(offset, length)
        if length:
            with self._errors(f"zeroing in {self.label}"):
                self._inflight.wait_range(offset, length)
                self._image.write_zeroes(offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        if self._read_only:
            return
        with self._errors(f"flushing {self.label}"):
            self._inflight.drain()
            self._raise_lost_write()
            self._image.flush()

    def extents(self, offset: int, length: int) -> Extents:
        """Allocated and unallocated runs, per object, from fast-diff (the object maps)."""
        self.check_range(offset, length)
        if not length:
            return []
        runs: Extents = []
        at = offset

        def record(start: int, size: int, exists: bool) -> int:
            nonlocal at
            start, end = max(start, offset), min(start + size, offset + length)
            if end <= start or not exists:
                return 0
            if start > at:
                runs.append((start - at, HOLE | ZERO))
            runs.append((end - start, 0))
            at = end
            return 0

        with self._errors(f"mapping {self.label}"):
            self._inflight.wait_range(offset, length)
            self._image.diff_iterate(offset, length, None, record, include_parent=True,
                                     whole_object=True)  # fmt: skip
        if at < offset + length:
            runs.append((offset + length - at, HOLE | ZERO))
        return _merged(runs)[:MAX_EXTENTS]

    def close(self) -> None:
        """Flush (when writable) and close the image; after a failure, close in the background."""
        if self._image is None:
            return
        failed = True
        try:
            self.flush()
            failed = False
        finally:
            image, self._image = self._image, None
            if failed:
                _close_later(image)
            else:
                with self._errors(f"closing {self.label}"):
                    image.close()


def _ignore(_completion) -> None:
    """librbd's completion callback: completions are waited for, not signalled."""


def _merged(runs: Extents) -> Extents:
    """Adjacent runs with the same flags as one."""
    out: Extents = []
    for length, flags in runs:
        if out and out[-1][1] == flags:
            out[-1] = (out[-1][0] + length, flags)
        else:
            out.append((length, flags))
    return out


_CLOSING: set = set()  # images closing in the background, kept alive until librbd is done


def _close_later(image) -> None:
    """Close without waiting: after a timeout librbd's close waits for the cluster to answer
    (releasing the exclusive lock), which would hang the failed operation until then."""
    _CLOSING.add(image)
    try:
        image.aio_close(lambda _completion: _CLOSING.discard(image))
    except Exception:  # already closed, or the handle is unusable: nothing left to release
        _CLOSING.discard(image)
