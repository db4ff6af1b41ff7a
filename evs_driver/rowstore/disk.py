"""The I/O seam: every write and every sync of a pool's files goes through one ``Disk``.

The data file is written, zeroed, resized and synced here. SQLite writes its own files
(the metadata and its write-ahead log) but never syncs them (``synchronous=OFF``, no
automatic checkpoint): the metadata store syncs the log after each commit and the database
file after each checkpoint through ``sync_path``, so what is durable is decided here too.
Tests swap in a ``Disk`` that records every write and sync and builds the states a power
cut could leave (the files as they were at the last syncs, plus any subset of the writes
after them, with torn sectors).

Why not a SQLite VFS (e.g. with APSW): a Python VFS has no shared-memory methods, so WAL
would need exclusive locking (no second reader, not even ``sqlite3`` for inspection), and
every page SQLite reads would cross into Python. Syncing SQLite's files ourselves gives the
seam every durability decision at no cost; what it does not see is SQLite's individual
writes between two syncs, which the recording disk reads back as the changed sectors of
each file at its sync (SQLite writes each log frame and checkpointed page once, so no
intermediate version is lost).
"""

import os

from evs_driver import fileio


class Disk:
    """Positional writes, zeroing and syncs on real files (the production seam)."""

    def open(self, path: str, flags: int) -> int:
        """Open ``path`` with ``os.open`` flags; return the descriptor."""
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        """Close a descriptor from ``open``."""
        os.close(fd)

    def pwrite(self, fd: int, data, position: int) -> int:
        """Write ``data`` at ``position``; return how many bytes were written."""
        return os.pwrite(fd, data, position)

    def copy_within(self, fd: int, source: int, position: int, length: int) -> None:
        """Copy ``length`` bytes of the file from ``source`` to ``position`` in the kernel."""
        fileio.copy_range(fd, source, fd, position, length)

    def punch_hole(self, fd: int, position: int, length: int) -> bool:
        """Deallocate a range (it reads as zeros); False when the file system cannot."""
        return fileio.punch_hole(fd, position, length)

    def write_zeros(self, fd: int, position: int, length: int) -> None:
        """Write zero bytes over a range."""
        fileio.write_zeros(fd, position, length)

    def truncate(self, fd: int, size: int) -> None:
        """Set the file's size."""
        os.ftruncate(fd, size)

    def fdatasync(self, fd: int) -> None:
        """Make the writes to ``fd`` that returned durable."""
        os.fdatasync(fd)

    def sync_path(self, path: str) -> None:
        """Make everything written to the file at ``path`` (by anyone) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


REAL = Disk()
