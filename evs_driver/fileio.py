"""Files and directories: zeroing byte ranges (punching holes where the file system can),
finding a file's holes, and creating the owner-only files and directories that hold volume
data and metadata."""

import ctypes
import errno
import os

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZEROS = bytes(1024 * 1024)
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.ENODEV)


def _load_fallocate():
    # The C library is already loaded into the interpreter; finding it by name would run
    # ``ldconfig -p`` in a child process at every start of every command.
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = getattr(libc, "fallocate64", None) or libc.fallocate
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fallocate.restype = ctypes.c_int
    return fallocate


_fallocate = _load_fallocate()


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a range (it reads as zeros); False when the file system cannot."""
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err))


def write_zeros(fd: int, offset: int, length: int) -> None:
    """Write zero bytes over a range (the fallback when holes cannot be punched)."""
    view = memoryview(_ZEROS)
    end = offset + length
    while offset < end:
        offset += os.pwrite(fd, view[: min(len(view), end - offset)], offset)


def data_runs(fd: int, offset: int, end: int, most: int) -> list[tuple[int, bool]] | None:
    """At most ``most`` runs of ``[offset, end)`` as ``(length, is_hole)`` (SEEK_DATA and
    SEEK_HOLE); None when the file system or device cannot tell."""
    runs = []
    position = offset
    while position < end and len(runs) < most:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                data = end  # no data after position: a hole to the end of the file
            elif exc.errno in (errno.EINVAL, *_UNSUPPORTED):
                return None
            else:
                raise
        if data > position:
            stop = min(data, end)
            runs.append((stop - position, True))
            position = stop
            continue
        stop = min(os.lseek(fd, position, os.SEEK_HOLE), end)
        runs.append((stop - position, False))
        position = stop
    return runs


def private_dir(path: str) -> str:
    """Make ``path`` and any missing parents as owner-only (0700) directories, whatever
    the umask; directories that already exist keep their mode. Returns ``path``."""
    path = os.path.abspath(path)
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # made by a racing process; its mode is its maker's
        os.chmod(directory, 0o700)
    return path


def create_private(path: str) -> None:
    """Create ``path`` as an owner-only (0600) empty file if it does not exist."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def sync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (a rename into it, say) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pread_full(fd: int, view: memoryview, offset: int) -> int:
    """Read into all of ``view`` from ``offset``; returns the bytes read, fewer only at EOF."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, (view[done:],), offset + done)
        if not got:
            break
        done += got
    return done


#: What ``copy_file_range`` fails with where it cannot copy (not a real I/O error).
CANNOT_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)


# One copy_file_range call asks for at most this much: full clones on ext4 (Linux 6.1)
# with 1 MiB calls ran 3-22% faster than with 8 MiB ones (medians, three interleaved runs).
COPY_CALL_BYTES = 1 << 20


def copy_range(src: int, src_offset: int, dst: int, dst_offset: int, length: int) -> None:
    """Copy bytes between regular files inside the kernel (``copy_file_range``: no pass
    through this process; a reflink where the file system shares extents). ``OSError``
    when it fails, with an errno in ``CANNOT_COPY`` when the kernel just cannot."""
    done = 0
    while done < length:
        ask = min(length - done, COPY_CALL_BYTES)
        moved = os.copy_file_range(src, dst, ask, src_offset + done, dst_offset + done)
        if not moved:  # the source ends early
            raise OSError(errno.EINVAL, "copy_file_range stopped short")
        done += moved


def same_file_system(fd: int, other: int) -> bool:
    """True when two open files are on one file system (where copies stay in the kernel)."""
    return os.fstat(fd).st_dev == os.fstat(other).st_dev


def pwrite_full(fd: int, data, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
    view = memoryview(data).cast("B")
    done = os.pwrite(fd, view, offset)
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
