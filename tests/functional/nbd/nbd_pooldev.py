"""A tiny adapter serving one rowstore ``Pool`` device as a ``BlockDevice`` (tests only).

The lead moves a real adapter into the local backend; this one exists so the NBD server
is proven against the real engine now.
"""

from evs_driver.rowstore import Pool


class PoolDevice:
    """One volume or snapshot of a pool; snapshots are read-only."""

    #: Every connection goes through the same pool, whose flush covers all of them.
    can_multi_conn = True

    def __init__(self, pool: Pool, name: str):
        info = pool.device(name)
        self._pool = pool
        self._name = name
        self._size = info.size
        self._read_only = info.kind != "volume"

    @property
    def size(self) -> int:
        return self._size

    @property
    def read_only(self) -> bool:
        return self._read_only

    def readinto(self, offset, buf) -> None:
        self._pool.readinto(self._name, offset, buf)

    def read(self, offset, length) -> bytes:
        return self._pool.read(self._name, offset, length)

    def write(self, offset, data, fua=False) -> None:
        self._pool.write(self._name, offset, data, fua)

    def discard(self, offset, length) -> None:
        self._pool.discard(self._name, offset, length)

    def write_zeroes(self, offset, length) -> None:
        self._pool.write_zeroes(self._name, offset, length)

    def flush(self) -> None:
        self._pool.flush()

    def close(self) -> None:
        """The pool stays open: it belongs to the caller."""
