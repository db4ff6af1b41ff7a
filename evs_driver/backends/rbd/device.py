"""A ``BlockDevice`` over an open ``rbd.Image`` (the data path of NBD exports and copies).

librbd is thread-safe, so the NBD server's workers share one image. ``flush`` is librbd's
flush (its cache, if enabled, and the OSDs' acknowledgement: RADOS writes are durable once
acknowledged); FUA is a write followed by a flush. Discard and write-zeroes go to librbd,
which deletes or truncates whole and partial objects, so the range reads as zeros.
"""

from evs_driver import exception
from evs_driver.backends import base


class RbdDevice(base.DeviceContext):
    """One open image (a volume's, or a snapshot's read-only) as a ``BlockDevice``."""

    def __init__(self, image, label: str, read_only: bool, errors):
        """``errors(action)`` is the cluster's error translator (``Cluster.errors``)."""
        self._image = image
        self.label = label
        self._read_only = read_only
        self._errors = errors
        with errors(f"reading the size of {label}"):
            self._size = image.size()

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        """True for snapshots and read-only opens."""
        return self._read_only

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise exception.OutOfRange(
                device=self.label, offset=offset, length=length, size=self._size
            )

    def _check_writable(self) -> None:
        if self._read_only:
            raise exception.ReadOnlyDevice(name=self.label)

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` with the bytes at ``offset``."""
        view = memoryview(buf).cast("B")
        self._check(offset, len(view))
        if not view:
            return
        with self._errors(f"reading {self.label}"):
            data = self._image.read(offset, len(view))
        view[:] = data

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        self._check(offset, length)
        if not length:
            return b""
        with self._errors(f"reading {self.label}"):
            return self._image.read(offset, length)

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable before returning."""
        self._check_writable()
        payload = bytes(data)
        self._check(offset, len(payload))
        with self._errors(f"writing {self.label}"):
            written = self._image.write(payload, offset)
            if written != len(payload):
                raise exception.BackendError(
                    backend=self.label, reason=f"short write: {written} of {len(payload)} bytes"
                )
            if fua:
                self._image.flush()

    def discard(self, offset: int, length: int) -> None:
        """Unmap the range; it reads as zeros afterwards."""
        self._check_writable()
        self._check(offset, length)
        if length:
            with self._errors(f"discarding in {self.label}"):
                self._image.discard(offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make the range read as zeros (librbd unmaps what it can)."""
        self._check_writable()
        self._check(offset, length)
        if length:
            with self._errors(f"zeroing in {self.label}"):
                self._image.write_zeroes(offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        if self._read_only:
            return
        with self._errors(f"flushing {self.label}"):
            self._image.flush()

    def close(self) -> None:
        """Flush (when writable) and close the image."""
        if self._image is None:
            return
        try:
            self.flush()
        finally:
            image, self._image = self._image, None
            with self._errors(f"closing {self.label}"):
                image.close()
