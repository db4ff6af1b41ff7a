"""The data file: fixed-size chunks in one sparse file, then an identity block.

Invariants kept with the pool:
- every chunk that is free reads as zeros (freed chunks are punched before reuse, and an
  unclean shutdown punches all free chunks at the next open), so a newly mapped chunk
  never exposes another device's old data;
- the file is exactly ``capacity`` bytes of chunks plus the identity block, which names
  the pool the metadata describes: a truncated, replaced or foreign data file is refused
  at open and reported by ``verify``, never read as zeros.
"""

import errno
import os
import struct
import threading
import uuid

from evs_driver import exception, fileio
from evs_driver.rowstore import directory
from evs_driver.rowstore.disk import REAL, Disk

IDENTITY_BYTES = 4096
_IDENTITY = struct.Struct("<16s16sQQ")  # magic, pool uuid, chunk size, capacity in chunks
_MAGIC = b"evs pool data\n\0\0"
_ZEROS = bytes(1 << 20)
_RESTORE = "restore the pool directory from a backup; the metadata maps data in it"


def new_pool_id() -> str:
    """A fresh pool identity, as stored in the metadata."""
    return uuid.uuid4().hex


class ChunkStore:
    """Positional I/O on the data file, in chunk units."""

    def __init__(
        self, path: str, chunk_size: int, capacity_chunks: int, pool_name: str, disk: Disk = REAL
    ):
        """Open the data file of a pool; ``verify_identity`` or ``stamp`` before use."""
        self.path = path
        self._disk = disk
        self.chunk_size = chunk_size
        self.capacity_chunks = capacity_chunks
        self.pool_name = pool_name
        self.file_size = capacity_chunks * chunk_size + IDENTITY_BYTES
        try:
            self.fd = disk.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise self._damaged(f"its data file {path} is missing; {_RESTORE}") from None
        self._inode = _identity_of(os.fstat(self.fd))
        # A volume's chunks lie anywhere in the file, so the kernel's sequential readahead
        # would guess wrong; worse, it fills the cache with large folios that make every
        # later small overwrite walk the whole folio. Reads ask for exactly what they need.
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        self._can_punch = True
        self._can_copy = True  # copy_file_range within the file works here
        #: A write, zeroing or resize returned since the last sync began.
        self._unsynced = False
        # One sync at a time: a caller that finds nothing new written must still wait for
        # the sync under way, which is the one that covers its writes.
        self._syncing = threading.Lock()

    @classmethod
    def create(
        cls, path: str, chunk_size: int, capacity_chunks: int, pool_id: str, disk: Disk = REAL
    ) -> None:
        """Make a new, empty (sparse) data file stamped with ``pool_id``; durable on return."""
        os.close(directory.create_private_file(path))
        store = cls(path, chunk_size, capacity_chunks, os.path.dirname(path), disk)
        try:
            store.stamp(pool_id, new=True)
        finally:
            store.close()

    def close(self) -> None:
        self._disk.close(self.fd)

    # -- identity ---------------------------------------------------------------------
    def _identity_block(self, pool_id: str) -> bytes:
        packed = _IDENTITY.pack(
            _MAGIC, uuid.UUID(hex=pool_id).bytes, self.chunk_size, self.capacity_chunks
        )
        return packed + bytes(IDENTITY_BYTES - len(packed))

    def stamp(self, pool_id: str, new: bool = False) -> None:
        """Size the file and write its identity block (new pools, and older pools' upgrade)."""
        size = os.fstat(self.fd).st_size
        if not new and size < self.capacity_chunks * self.chunk_size:
            raise self._damaged(self._size_problem(size))
        self._disk.truncate(self.fd, self.file_size)
        self._unsynced = True
        self.write(self.capacity_chunks * self.chunk_size, self._identity_block(pool_id))
        self.sync()

    def verify_identity(self, pool_id: str) -> None:
        """Refuse a data file that is not the one this pool's metadata describes."""
        problems = self.problems(pool_id)
        if problems:
            raise self._damaged(f"{problems[0]}; {_RESTORE}")

    def problems(self, pool_id: str | None) -> list[str]:
        """What is wrong with the data file: missing, replaced, resized or foreign."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return [f"the data file {self.path} was removed while the pool was open"]
        if _identity_of(on_disk) != self._inode:
            return [f"the data file {self.path} was replaced while the pool was open"]
        size = os.fstat(self.fd).st_size
        if pool_id is None:  # a pool from before identity blocks: only its size is known
            return (
                [] if size >= self.capacity_chunks * self.chunk_size else [self._size_problem(size)]
            )
        if size != self.file_size:
            return [self._size_problem(size)]
        block = os.pread(self.fd, _IDENTITY.size, self.capacity_chunks * self.chunk_size)
        if block != self._identity_block(pool_id)[: _IDENTITY.size]:
            if block[: len(_MAGIC)] == _MAGIC:
                return [f"the data file {self.path} belongs to another pool"]
            return [f"the data file {self.path} is not this pool's (its identity block is gone)"]
        return []

    def _size_problem(self, size: int) -> str:
        return (
            f"the data file {self.path} is {size} bytes but the pool's is {self.file_size} "
            f"(truncated or replaced?)"
        )

    def _damaged(self, reason: str) -> exception.PoolCorrupt:
        return exception.PoolCorrupt(path=self.pool_name, reason=reason)

    # -- data -----------------------------------------------------------------------
    def _error(self, err: OSError) -> exception.EVSError:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return exception.FileSystemFull(
                pool=self.pool_name, detail=f"data file {self.path}: {err.strerror}"
            )
        return exception.EVSError(f"I/O error on {self.path}: {err}")

    def readinto(self, position: int, view: memoryview) -> None:
        """Fill ``view`` from byte ``position`` of the file."""
        done = os.preadv(self.fd, [view], position)
        while done < len(view):
            more = os.preadv(self.fd, [view[done:]], position + done)
            if not more:  # the file ends early: it was truncated under the open pool
                size = os.fstat(self.fd).st_size
                raise self._damaged(f"{self._size_problem(size)}; {_RESTORE}")
            done += more

    def copy_out(self, position: int, fd: int, at: int, length: int) -> None:
        """Copy bytes of the file into another regular file inside the kernel (``OSError``
        when it cannot, e.g. on another file system: the caller reads and writes)."""
        if not fileio.same_file_system(self.fd, fd):
            raise OSError(errno.EXDEV, "not on one file system")
        fileio.copy_range(self.fd, position, fd, at, length)

    def will_read(self, position: int, length: int) -> None:
        """Start reading a range into the page cache (a hint: nothing waits for it)."""
        os.posix_fadvise(self.fd, position, length, os.POSIX_FADV_WILLNEED)

    def copy_in(self, source: int, position: int, length: int) -> None:
        """Write bytes of the file at ``source`` to ``position``: a copy in the kernel, or
        through a buffer where the kernel cannot copy (then from now on), one ``pwrite``
        per chunk as ``WritePath`` writes buffers."""
        # The kernel refuses overlapping ranges of one file with the errno it uses for
        # "cannot copy here" (EINVAL): such a copy goes through a buffer, this once.
        overlapping = abs(source - position) < length
        if self._can_copy and not overlapping:
            self._unsynced = True
            try:
                self._disk.copy_within(self.fd, source, position, length)
                return
            except OSError as err:
                if err.errno not in fileio.CANNOT_COPY:
                    raise self._error(err) from err
                self._can_copy = False
        buffer = memoryview(bytearray(length))
        self.readinto(source, buffer)
        done = 0
        while done < length:
            end = min(length, done + self.chunk_size - (position + done) % self.chunk_size)
            self.write(position + done, buffer[done:end])
            done = end

    def write(self, position: int, data) -> None:
        try:
            done = self._disk.pwrite(self.fd, data, position)
            while done < len(data):
                done += self._disk.pwrite(self.fd, memoryview(data)[done:], position + done)
        except OSError as err:
            raise self._error(err) from err
        finally:
            self._unsynced = True

    def zero(self, position: int, length: int) -> None:
        """Make a byte range read as zeros, giving its space back to the file system."""
        try:
            if self._can_punch and self._disk.punch_hole(self.fd, position, length):
                return
            self._can_punch = False
            self._disk.write_zeros(self.fd, position, length)
        except OSError as err:
            raise self._error(err) from err
        finally:
            self._unsynced = True

    def zero_chunks(self, chunks: list[int]) -> None:
        """Zero whole chunks, one call per run of consecutive chunk numbers."""
        for first, count in runs(sorted(chunks)):
            self.zero(first * self.chunk_size, count * self.chunk_size)

    def sync(self) -> None:
        """Make every write that returned durable (``FileSystemFull`` on ENOSPC); nothing to
        do when none returned since the last sync began."""
        with self._syncing:
            if not self._unsynced:
                return
            # Cleared first: a write returning during the sync sets it again for the next one.
            self._unsynced = False
            try:
                self._disk.fdatasync(self.fd)
            except OSError as err:
                self._unsynced = True
                raise self._error(err) from err


def _identity_of(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def runs(sorted_numbers: list[int]):
    """Yield (first, count) for each run of consecutive numbers."""
    start = previous = None
    for number in sorted_numbers:
        if start is None:
            start = previous = number
        elif number == previous + 1:
            previous = number
        else:
            yield start, previous - start + 1
            start = previous = number
    if start is not None:
        yield start, previous - start + 1
