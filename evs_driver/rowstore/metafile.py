"""The metadata file before it is opened, and when SQLite fails.

Invariants kept here: a metadata file is checked read-only (its header, SQLite's quick
check, the pool's tables) before anything opens it for writing, so a damaged one is refused
with the file named and is never changed by the failed open; and every SQLite error leaves
as an engine error naming the file and what to do.
"""

import contextlib
import os
import sqlite3
import urllib.parse

from evs_driver import exception

_SQLITE_HEADER = b"SQLite format 3\0"
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 8, 10, 11, 13, 26
_RESTORE = (
    "it was left unchanged; restore the pool directory from a backup "
    "(keep the damaged file for analysis)"
)


def validate(path: str, pool_path: str) -> None:
    """Refuse a missing, empty or damaged metadata file without writing to it."""
    try:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        raise exception.InvalidPool(path=pool_path, reason=f"{path} is missing") from None
    if not header:
        raise exception.PoolCorrupt(path=pool_path, reason=f"{path} is empty (0 bytes); {_RESTORE}")
    if header != _SQLITE_HEADER:
        raise exception.PoolCorrupt(
            path=pool_path,
            reason=f"{path} is not an SQLite database (its header is damaged); {_RESTORE}",
        )
    uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
    absent = [path + side for side in ("-wal", "-shm") if not os.path.exists(path + side)]
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchall()
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error as err:
        raise engine_error(err, path, pool_path) from err
    finally:
        # A read-only connection leaves an empty log and an index behind; the caller holds
        # the pool's lock, so nothing else uses them.
        for side in absent:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(side)
    if verdict != [("ok",)]:
        raise exception.PoolCorrupt(
            path=pool_path, reason=f"{path} fails SQLite's check ({verdict[0][0]}); {_RESTORE}"
        )
    if not {"pool", "devices", "nodes", "refcounts", "garbage"} <= tables:
        raise exception.PoolCorrupt(
            path=pool_path, reason=f"{path} does not hold an evs pool's tables; {_RESTORE}"
        )


def engine_error(err: sqlite3.Error, path: str, pool_path: str) -> exception.EVSError:
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _out_of_space(pool_path)):
        return exception.FileSystemFull(pool=pool_path, detail=f"metadata file {path}: {err}")
    if code == _SQLITE_READONLY:
        return exception.InvalidPool(
            path=pool_path, reason=f"{path} cannot be written ({err}); make it writable"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return exception.PoolCorrupt(path=pool_path, reason=f"{path}: {err}; {_RESTORE}")
    return exception.EVSError(f"Metadata error on {path} of pool {pool_path}: {err}")


def _out_of_space(pool_path: str) -> bool:
    """True when the pool's file system has (almost) no space left: SQLite reports a failed
    sync or extension as an I/O error without saying that ENOSPC caused it."""
    try:
        info = os.statvfs(pool_path)
    except OSError:
        return False
    blocks = info.f_bfree if os.geteuid() == 0 else info.f_bavail
    return blocks * info.f_frsize < 1 << 20
