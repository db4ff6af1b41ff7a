"""One volume or snapshot of an open pool as a ``BlockDevice`` (for NBD and image copies)."""

from evs_driver import exception
from evs_driver.blockdev import Extents
from evs_driver.rowstore.pool import Pool


class PoolDevice:
    """Reads and writes one device of a pool that its caller keeps open."""

    #: Every connection writes through the one open pool, and its flush commits the whole
    #: pool, so a flush on any connection covers writes acknowledged on all of them.
    can_multi_conn = True

    def __init__(self, pool: Pool, name: str, writable: bool = True):
        """``NotFound`` when the pool has no such device; snapshots are always read-only."""
        info = pool.device(name)
        self._pool = pool
        self._name = name
        self._size = info.size
        self._read_only = not writable or info.kind != "volume"

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        """True for snapshots and devices opened read-only."""
        return self._read_only

    def readinto(self, offset: int, buf) -> None:
        """Fill ``buf`` from ``offset``."""
        self._pool.readinto(self._name, offset, buf)

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        return self._pool.read(self._name, offset, length)

    def _writable(self) -> None:
        if self._read_only:
            raise exception.ReadOnlyDevice(name=self._name)

    def write(self, offset: int, data, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` durable before returning."""
        self._writable()
        self._pool.write(self._name, offset, data, fua=fua)

    def discard(self, offset: int, length: int) -> None:
        """Unmap a range; it reads as zeros and frees its whole chunks."""
        self._writable()
        self._pool.discard(self._name, offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make a range read as zeros (a discard, in this engine)."""
        self.discard(offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        self._pool.flush()

    def extents(self, offset: int, length: int) -> Extents:
        """Mapped chunks as data, unmapped ones as holes reading as zeros."""
        return self._pool.extents(self._name, offset, length)

    def close(self) -> None:
        """Nothing to release: the pool belongs to the caller."""
