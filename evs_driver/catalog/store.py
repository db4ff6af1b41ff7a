"""The catalog's SQLite file: its schema, one shared connection, and what its errors mean."""

import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import Iterator

from evs_driver import exception, fileio
from evs_driver.catalog.txn import Txn
from evs_driver.sqlitelog import LogSync, close_keeping_log

_SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY,
    display_name TEXT,
    display_description TEXT,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    source_snapshot_id TEXT,
    source_volume_id TEXT,
    full_clone INTEGER NOT NULL DEFAULT 0,
    progress INTEGER,
    provider_location TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    task TEXT
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    display_name TEXT,
    display_description TEXT,
    volume_id TEXT NOT NULL,
    volume_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    backend TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    provider_location TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    task TEXT
);
CREATE INDEX IF NOT EXISTS snapshots_volume ON snapshots (volume_id);
CREATE TABLE IF NOT EXISTS attachments (
    volume_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    initiator TEXT NOT NULL,
    connector TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    PRIMARY KEY (volume_id, protocol, initiator)
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    volume_id TEXT NOT NULL UNIQUE,
    every INTEGER NOT NULL,
    keep INTEGER NOT NULL,
    keep_daily INTEGER NOT NULL DEFAULT 0,
    keep_weekly INTEGER NOT NULL DEFAULT 0,
    anchor TEXT NOT NULL,
    next_run TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_run TEXT,
    last_snapshot_id TEXT,
    last_error TEXT
);
"""
# Tables added after the first release (made when missing).
_ADDED_TABLES = """
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    display_name TEXT,
    display_description TEXT,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    task TEXT
);
CREATE TABLE IF NOT EXISTS group_snapshots (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    display_name TEXT,
    display_description TEXT,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    task TEXT
);
"""
# Columns added after the first release, with their definitions (added when missing).
_ADDED_COLUMNS = {
    "volumes": {"provider_auth": "TEXT", "group_id": "TEXT"},
    "snapshots": {"group_snapshot_id": "TEXT"},
}

# SQLite's primary result codes that call for their own message.
_READONLY, _IOERR, _CORRUPT, _CANTOPEN, _FULL, _NOTADB = 8, 10, 11, 14, 13, 26


class Catalog:
    """The SQLite catalog file under the state path: one connection, shared by the threads
    of this process (serialized here; other processes are SQLite's to serialize).

    ``transaction()`` may write: IMMEDIATE, its log synced once it committed (see
    ``sqlitelog``), so a change that returned survives a power cut. ``reading()`` only
    reads: a deferred transaction that takes no write lock and syncs nothing. Closing keeps
    the log, so a command pays no checkpoint (SQLite checkpoints once the log has grown): a
    copy of the catalog is ``catalog.sqlite`` with its ``-wal``.
    """

    def __init__(self, path: str, used_before: bool = False):
        """``used_before``: the state path holds other state, so a catalog file cut to
        nothing, or one without tables (cut short, or its log lost: closing keeps the
        committed transactions there), is damage, not a new catalog (which is empty only for
        an instant)."""
        self.path = path
        self._lock = threading.RLock()
        if used_before and _empty(path) and _empty(path + "-wal"):
            raise exception.CatalogError(path=path, reason=_DAMAGED)
        try:
            fileio.private_dir(os.path.dirname(os.path.abspath(path)))
            # SQLite gives its -wal and -shm files the mode of the database file.
            fileio.create_private(path)
        except OSError as exc:
            raise exception.CatalogError(path=path, reason=f"cannot create it: {exc}") from exc
        self._log = LogSync(path)  # before the connection makes the log
        self._db = self._connect()
        try:
            with self._errors("set up"):
                if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise exception.CatalogError(path=path, reason=_DAMAGED)
                if used_before and not _tables(self._db):
                    raise exception.CatalogError(path=path, reason=_DAMAGED)
                if _upgrade(self._db):
                    self._sync_log()
        except BaseException:
            self._log.close()
            self._db.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        with self._errors("open"):
            db = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
        db.row_factory = sqlite3.Row
        try:
            with self._errors("open"):
                db.execute("PRAGMA journal_mode = WAL")
                # Commits are synced by ``transaction``; checkpoints by SQLite.
                db.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Close the connection (a closed catalog refuses further use), keeping the log."""
        with self._lock:
            self._log.close()
            close_keeping_log(self._db, self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Txn]:
        """One IMMEDIATE transaction: committed (and synced, when it changed a row) on
        success, rolled back on error."""
        with self._lock, self._errors("write"):
            self._db.execute("BEGIN IMMEDIATE")
            changes = self._db.total_changes
            try:
                yield Txn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if self._db.total_changes != changes:  # else the log got nothing to sync
                self._sync_log()

    def _sync_log(self) -> None:
        try:
            self._log.sync()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise exception.CatalogFull(path=self.path, reason=_FULL_REASON) from exc
            raise exception.CatalogError(
                path=self.path, reason=f"its log cannot be made durable: {exc}"
            ) from exc

    @contextlib.contextmanager
    def reading(self) -> Iterator[Txn]:
        """One read-only transaction: a consistent view, no write lock, nothing synced."""
        with self._lock, self._errors("read"):
            self._db.execute("BEGIN DEFERRED")
            try:
                yield Txn(self._db)
            finally:
                self._db.execute("ROLLBACK")

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """SQLite's errors as ``CatalogError`` naming the file and what to do."""
        try:
            yield
        except sqlite3.ProgrammingError:
            raise  # a bug of ours, not the file's
        except sqlite3.DatabaseError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            reason = {
                _FULL: _FULL_REASON,
                _READONLY: "it is read-only; make the state path and its files writable by "
                "the service's user",
                _CANTOPEN: "it cannot be opened; check the state path and its permissions",
                _CORRUPT: _DAMAGED,
                _NOTADB: _DAMAGED,
            }.get(code, f"{action} failed: {exc}")
            error = exception.CatalogFull if code == _FULL else exception.CatalogError
            raise error(path=self.path, reason=reason) from exc


_FULL_REASON = "the file system is full; free space there and retry"
_DAMAGED = (
    "it is damaged (not an SQLite database, or its pages fail a check); restore it from a "
    "backup. It was not changed."
)


def _empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except FileNotFoundError:
        return True


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _upgrade(db: sqlite3.Connection) -> bool:
    """Make a new catalog's tables, or add what one made by an older release lacks; an
    up-to-date catalog is only read. Returns whether it wrote."""
    wrote = False
    if not {"volumes", "snapshots", "attachments", "schedules"} <= _tables(db):
        db.executescript(_SCHEMA)
        wrote = True
    if not {"groups", "group_snapshots"} <= _tables(db):
        db.executescript(_ADDED_TABLES)
        wrote = True
    for table, columns in _ADDED_COLUMNS.items():
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                wrote = True
    return wrote
