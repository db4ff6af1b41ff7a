"""The block device a backend hands to the data path (NBD server, import/export)."""

from typing import Protocol

# Flags of an extent (the values of NBD's base:allocation context, passed on unchanged).
HOLE = 1  # not allocated: writing there may need new space
ZERO = 2  # reads as zeros

Extents = list[tuple[int, int]]
"""Consecutive ``(length, flags)`` runs; every length is positive."""


class BlockDevice(Protocol):
    """A byte-addressed disk; every method may raise an ``EVSError``."""

    @property
    def size(self) -> int:
        """Size in bytes."""

    @property
    def read_only(self) -> bool:
        """True for snapshots and read-only exports."""

    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """Fill ``buf`` with the bytes at ``offset``; unwritten ranges read as zeros."""

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""

    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable before returning."""

    def discard(self, offset: int, length: int) -> None:
        """Unmap a range; it reads as zeros afterwards."""

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make a range read as zeros (may unmap it)."""

    def flush(self) -> None:
        """Make every write acknowledged before this call durable."""

    def extents(self, offset: int, length: int) -> Extents:
        """How ``[offset, offset + length)`` is allocated, as runs from ``offset``.

        The runs may stop short of ``length`` (there is at least one) but never go past it.
        A run the device cannot tell about is reported as allocated data (flags 0), which
        is always safe: a client just reads it.
        """

    def close(self) -> None:
        """Release the device; the data stays."""
