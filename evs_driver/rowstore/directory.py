"""The pool directory: the files it holds, who may read them, and whether we can write them.

Invariants kept here:
- every file and directory the engine creates is private to its owner (0600, 0700) whatever
  the umask, and opening a pool takes group and other access away from older files;
- a pool the engine cannot write is refused at open with the file named, never left to fail
  later inside SQLite ("attempt to write a readonly database").
"""

import contextlib
import os
import stat

from evs_driver import exception, fileio

DATA_FILE = "data"
META_FILE = "metadata.sqlite"
LOCK_FILE = "lock"
#: SQLite's write-ahead log and its shared-memory index, beside the metadata file.
SQLITE_SIDE_FILES = (META_FILE + "-wal", META_FILE + "-shm")
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_directory(path: str) -> None:
    """Create ``path`` (and missing parents, 0700) and make it 0700 even if it existed."""
    fileio.private_dir(path)
    os.chmod(path, DIR_MODE)


def create_private_file(path: str) -> int:
    """Create ``path`` empty (replacing a file there) as 0600; return an O_RDWR descriptor."""
    fileio.create_private(path)
    os.chmod(path, FILE_MODE)  # exactly 0600: os.open's mode passes through the umask
    return os.open(path, os.O_RDWR | os.O_TRUNC | os.O_CLOEXEC)


def sync_directory(path: str) -> None:
    """Make the names created or renamed in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private(pool_path: str) -> None:
    """Take group and other access away from the pool's directory and the files we own."""
    names = (DATA_FILE, META_FILE, LOCK_FILE, *SQLITE_SIDE_FILES)
    for path in (pool_path, *(os.path.join(pool_path, name) for name in names)):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


def require_writable(pool_path: str) -> None:
    """Raise ``InvalidPool`` naming the first pool file this process cannot write.

    A stale SQLite side file that is read-only (SQLite gives them the metadata file's mode,
    so they stay read-only after that file's mode is fixed) is repaired instead: we hold
    the pool's lock, so no connection uses them.
    """
    _require_access(pool_path, os.W_OK | os.X_OK, "directory")
    for name in (META_FILE, DATA_FILE):
        _require_access(os.path.join(pool_path, name), os.R_OK | os.W_OK, "file")
    wal, shm = (os.path.join(pool_path, name) for name in SQLITE_SIDE_FILES)
    if os.path.exists(shm) and not os.access(shm, os.R_OK | os.W_OK):
        # The index is rebuilt from the log when it is missing.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(shm)
    if os.path.exists(wal) and not os.access(wal, os.R_OK | os.W_OK):
        with contextlib.suppress(PermissionError):
            os.chmod(wal, FILE_MODE)  # only its owner may; otherwise the check below names it
        _require_access(wal, os.R_OK | os.W_OK, "file")


def _require_access(path: str, mode: int, what: str) -> None:
    if os.access(path, mode):
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return  # a missing file is reported by the code that needs it, with its own words
    pool_path = path if what == "directory" else os.path.dirname(path)
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        reason = f"{path} is on a read-only file system; mount it read-write"
    else:
        reason = (
            f"this process (uid {os.geteuid()}) cannot write the {what} {path} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}); "
            f"give its owner write permission back or run as the owner"
        )
    raise exception.InvalidPool(path=pool_path, reason=reason)
