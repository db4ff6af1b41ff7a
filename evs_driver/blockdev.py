"""The block device a backend hands to the data path (NBD server, import/export), and the
base class every device of this project builds on."""

import abc
from typing import Protocol

from evs_driver import exception

# Flags of an extent (the values of NBD's base:allocation context, passed on unchanged).
HOLE = 1  # not allocated: writing there may need new space
ZERO = 2  # reads as zeros
CHANGED = 1  # of a ``changes`` run: differs from the base (as NBD dirty bitmaps report it)

Extents = list[tuple[int, int]]
"""Consecutive ``(length, flags)`` runs; every length is positive."""
MAX_EXTENTS = 1024  # runs a device returns at most per extents() call; callers ask again


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

    def plain_file(self) -> int | None:
        """A descriptor of the regular file holding this device's bytes at their own
        offsets, writable, for copies the kernel makes; None when there is none."""

    def copy_to_file(self, offset: int, length: int, fd: int) -> bool:
        """Copy a range into the regular file ``fd`` at the same offsets inside the kernel
        (``copy_file_range``); False when it cannot, and the caller reads and writes."""

    def copy_from(self, source: "BlockDevice", offset: int, length: int) -> bool:
        """Copy a range of ``source`` onto the same range here without reading it through
        the caller (e.g. inside one pool); False when this device cannot."""

    def close(self) -> None:
        """Release the device; the data stays."""


class DeviceBase(abc.ABC):
    """What every block device here shares: its name, size and mode, the checks of a
    request's range, ``read``, and closing at the end of a ``with`` block."""

    def __init__(self, name: str, size: int, read_only: bool):
        self.name = name
        self._size = size
        self._read_only = read_only

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def read_only(self) -> bool:
        """True for snapshots and devices opened read-only."""
        return self._read_only

    def check_range(self, offset: int, length: int) -> None:
        """``OutOfRange`` unless ``[offset, offset + length)`` lies inside the device."""
        if offset < 0 or length < 0 or offset + length > self._size:
            raise exception.OutOfRange(
                device=self.name, offset=offset, length=length, size=self._size
            )

    def check_writable(self, offset: int, length: int) -> None:
        """``ReadOnlyDevice`` for a read-only device, else the range check."""
        if self._read_only:
            raise exception.ReadOnlyDevice(name=self.name)
        self.check_range(offset, length)

    def read(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``."""
        buf = bytearray(length)
        self.readinto(offset, buf)
        return bytes(buf)

    def write_zeroes(self, offset: int, length: int) -> None:
        """Make a range read as zeros; unmapping it is the cheapest way for these devices."""
        self.discard(offset, length)

    def plain_file(self) -> int | None:
        """See ``BlockDevice``: none, unless a device says otherwise."""
        return None

    def copy_to_file(self, offset: int, length: int, fd: int) -> bool:
        """See ``BlockDevice``: not inside the kernel, unless a device says otherwise."""
        return False

    def copy_from(self, source: "BlockDevice", offset: int, length: int) -> bool:
        """See ``BlockDevice``: not without reading, unless a device says otherwise."""
        return False

    @abc.abstractmethod
    def readinto(self, offset: int, buf: memoryview | bytearray) -> None:
        """See ``BlockDevice``."""

    @abc.abstractmethod
    def write(self, offset: int, data: bytes | memoryview, fua: bool = False) -> None:
        """See ``BlockDevice``."""

    @abc.abstractmethod
    def discard(self, offset: int, length: int) -> None:
        """See ``BlockDevice``."""

    @abc.abstractmethod
    def flush(self) -> None:
        """See ``BlockDevice``."""

    @abc.abstractmethod
    def extents(self, offset: int, length: int) -> Extents:
        """See ``BlockDevice``."""

    @abc.abstractmethod
    def close(self) -> None:
        """See ``BlockDevice``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
