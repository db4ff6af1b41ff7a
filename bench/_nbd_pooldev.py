"""A rowstore ``Pool`` device as a ``BlockDevice`` for the NBD benchmark (until the backend's)."""

from evs_driver.rowstore import Pool


class PoolDevice:
    """One pool volume; the pool stays open when the device closes."""

    can_multi_conn = True  # every connection shares the pool, whose flush covers all

    def __init__(self, pool: Pool, name: str):
        self._pool = pool
        self._name = name
        self.size = pool.device(name).size
        self.read_only = False

    def readinto(self, offset: int, buf) -> None:
        """Fill ``buf`` from ``offset``."""
        self._pool.readinto(self._name, offset, buf)

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        return self._pool.read(self._name, offset, length)

    def write(self, offset: int, data, fua: bool = False) -> None:
        """Write ``data`` at ``offset``."""
        self._pool.write(self._name, offset, data, fua)

    def discard(self, offset: int, length: int) -> None:
        """Unmap a range."""
        self._pool.discard(self._name, offset, length)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Zero a range."""
        self._pool.write_zeroes(self._name, offset, length)

    def flush(self) -> None:
        """Make acknowledged writes durable."""
        self._pool.flush()

    def close(self) -> None:
        """Nothing to release: the benchmark owns the pool."""
