"""One volume or snapshot of an open pool as a ``BlockDevice`` (for NBD and image copies)."""

from evs_driver.blockdev import MAX_EXTENTS, DeviceBase, Extents
from evs_driver.rowstore.pool import Pool


class PoolDevice(DeviceBase):
    """Reads and writes one device of a pool that its caller keeps open."""

    #: Every connection writes through the one open pool, and its flush commits the whole
    #: pool, so a flush on any connection covers writes acknowledged on all of them.
    can_multi_conn = True
    #: The pool is thread-safe: a connection's flush may run beside its reads and writes.
    concurrent_flush = True

    def __init__(self, pool: Pool, name: str, writable: bool = True):
        """``NotFound`` when the pool has no such device; snapshots are always read-only."""
        info = pool.device(name)
        super().__init__(name, info.size, not writable or info.kind != "volume")
        self._pool = pool

    def readinto(self, offset: int, buf) -> None:
        """Fill ``buf`` from ``offset`` (the pool checks the range)."""
        self._pool.readinto(self.name, offset, buf)

    def write(self, offset: int, data, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` durable before returning."""
        self.check_writable(offset, len(data))
        self._pool.write(self.name, offset, data, fua=fua)

    def discard(self, offset: int, length: int) -> None:
        """Unmap a range; it reads as zeros and frees its whole chunks."""
        self.check_writable(offset, length)
        self._pool.discard(self.name, offset, length)

    def flush(self) -> None:
        """Make every acknowledged write durable."""
        self._pool.flush()

    def extents(self, offset: int, length: int) -> Extents:
        """Mapped chunks as data, unmapped ones as holes reading as zeros."""
        return self._pool.extents(self.name, offset, length)

    def changes(self, base: str, offset: int, length: int, limit: int = MAX_EXTENTS) -> Extents:
        """Where this device differs from device ``base`` of the pool, as ``extents``-style
        runs (``CHANGED`` or 0), from the trees: the cost follows what changed."""
        return self._pool.changes(base, self.name, offset, length, limit)

    def copy_from(self, source, offset: int, length: int) -> bool:
        """Copy a range of ``source`` here inside the kernel when it is a device of the
        same pool; False otherwise (the caller reads and writes)."""
        if not isinstance(source, PoolDevice) or source._pool is not self._pool:
            return False
        self.check_writable(offset, length)
        self._pool.copy_within(source.name, self.name, offset, length)
        return True

    def copy_to_file(self, offset: int, length: int, fd: int) -> bool:
        """Copy a range into ``fd`` at the same offsets, chunks inside the kernel."""
        return self._pool.copy_to_file(self.name, offset, length, fd)

    def close(self) -> None:
        """Nothing to release: the pool belongs to the caller."""
