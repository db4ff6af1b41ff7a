"""The catalog: volumes and snapshots with their names, sizes and statuses, in SQLite.

Invariant: a row's status only changes through ``Txn.move_status``, a compare-and-set
inside an IMMEDIATE transaction that raises ``StatusChanged`` when the row is not in a status
the caller expects, so two processes racing on one row cannot both move it and a lost race
is never ignored. Rows in an intermediate status carry a ``task`` naming the operation and
its owner, which is what crash recovery reads.
"""

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator

from evs_driver import exception, fileio
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
"""


def now() -> str:
    """The current UTC time as an ISO 8601 string."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def new_id() -> str:
    """A fresh UUID for a volume or snapshot."""
    return str(uuid.uuid4())


class _Record:
    """Dict-style access as well, like Cinder's versioned objects."""

    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        """The field's value, or ``default``."""
        return getattr(self, key, default)

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Volume(_Record):
    """A catalog volume; ``size`` is GiB, ``name`` the backend-style ``volume-<id>``."""

    id: str
    display_name: str | None
    display_description: str | None
    size: int
    status: str
    backend: str
    created_at: str
    updated_at: str
    source_snapshot_id: str | None = None
    source_volume_id: str | None = None
    full_clone: bool = False
    progress: int | None = None
    provider_location: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    task: dict | None = None

    @property
    def name(self) -> str:
        return f"volume-{self.id}"

    @property
    def snapshot_id(self) -> str | None:
        return self.source_snapshot_id

    @property
    def source_volid(self) -> str | None:
        return self.source_volume_id


@dataclasses.dataclass
class Snapshot(_Record):
    """A catalog snapshot; ``volume_size`` is the volume's size (GiB) when it was taken."""

    id: str
    display_name: str | None
    display_description: str | None
    volume_id: str
    volume_size: int
    status: str
    backend: str
    created_at: str
    updated_at: str
    provider_location: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    task: dict | None = None

    @property
    def name(self) -> str:
        return f"snapshot-{self.id}"

    @property
    def size(self) -> int:
        return self.volume_size


_JSON_FIELDS = ("metadata", "task")


def _from_row(cls, row: sqlite3.Row):
    values = dict(row)
    for key in _JSON_FIELDS:
        if values.get(key) is not None:
            values[key] = json.loads(values[key])
    if "full_clone" in values:
        values["full_clone"] = bool(values["full_clone"])
    if values.get("metadata") is None:
        values["metadata"] = {}
    return cls(**values)


def _to_columns(fields: dict) -> dict:
    out = dict(fields)
    for key in _JSON_FIELDS:
        if key in out and out[key] is not None:
            out[key] = json.dumps(out[key], sort_keys=True)
    return out


class Txn:
    """Reads and writes inside one IMMEDIATE transaction."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    # -- reads ---------------------------------------------------------------------
    def volume(self, volume_id: str) -> Volume | None:
        """The volume with this id, or None."""
        row = self._db.execute("SELECT * FROM volumes WHERE id = ?", (volume_id,)).fetchone()
        return _from_row(Volume, row) if row else None

    def snapshot(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot with this id, or None."""
        row = self._db.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        return _from_row(Snapshot, row) if row else None

    def volumes(self, name: str | None = None, **where) -> list[Volume]:
        """Volumes, optionally filtered by display name and exact column values."""
        if name is not None:
            where["display_name"] = name
        return [_from_row(Volume, r) for r in self._select("volumes", where)]

    def snapshots(self, name: str | None = None, **where) -> list[Snapshot]:
        """Snapshots, optionally filtered by display name and exact column values."""
        if name is not None:
            where["display_name"] = name
        return [_from_row(Snapshot, r) for r in self._select("snapshots", where)]

    def _select(self, table: str, where: dict) -> list[sqlite3.Row]:
        clause = " AND ".join(f"{key} = ?" for key in where) or "1"
        sql = f"SELECT * FROM {table} WHERE {clause} ORDER BY created_at, rowid"
        return self._db.execute(sql, tuple(where.values())).fetchall()

    def in_status(self, table: str, statuses: Iterable[str]) -> list:
        """Rows of ``table`` ('volumes' or 'snapshots') whose status is one of ``statuses``."""
        statuses = tuple(statuses)
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(
            f"SELECT * FROM {table} WHERE status IN ({marks}) ORDER BY rowid", statuses
        ).fetchall()
        cls = Volume if table == "volumes" else Snapshot
        return [_from_row(cls, r) for r in rows]

    # -- writes --------------------------------------------------------------------
    def add(self, record: Volume | Snapshot) -> None:
        """Insert a new volume or snapshot."""
        table = "volumes" if isinstance(record, Volume) else "snapshots"
        fields = _to_columns(dataclasses.asdict(record))
        cols = ", ".join(fields)
        marks = ", ".join("?" * len(fields))
        self._db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(fields.values()))

    def move_status(
        self, record: Volume | Snapshot, status: str, expect: Iterable[str], **fields
    ) -> None:
        """Move ``record`` to ``status`` (setting ``fields`` too) if it is in one of
        ``expect``; ``StatusChanged`` otherwise. The object follows the row."""
        expect = tuple(expect)
        where = f"status IN ({','.join('?' * len(expect))})"
        if not self._set(record, dict(fields, status=status), where, expect):
            current = (self.volume if isinstance(record, Volume) else self.snapshot)(record.id)
            raise exception.StatusChanged(
                kind=type(record).__name__,
                name=record.id,
                expected=" or ".join(expect),
                status=current.status if current else "deleted",
            )

    def set_fields(self, record: Volume | Snapshot, **fields) -> None:
        """Set fields other than the status (progress, names) on ``record`` and the object."""
        if "status" in fields:
            raise ValueError("statuses move through move_status")
        self._set(record, fields, "1", ())

    def _set(self, record: Volume | Snapshot, fields: dict, where: str, args: tuple) -> bool:
        table = "volumes" if isinstance(record, Volume) else "snapshots"
        fields["updated_at"] = now()
        cols = _to_columns(fields)
        sets = ", ".join(f"{key} = ?" for key in cols)
        sql = f"UPDATE {table} SET {sets} WHERE id = ? AND {where}"
        if self._db.execute(sql, [*cols.values(), record.id, *args]).rowcount != 1:
            return False
        for key, value in fields.items():
            setattr(record, key, value)
        return True

    def remove(self, record: Volume | Snapshot) -> None:
        """Delete the row of ``record``."""
        table = "volumes" if isinstance(record, Volume) else "snapshots"
        self._db.execute(f"DELETE FROM {table} WHERE id = ?", (record.id,))


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
        nothing is damage, not a new catalog (which is empty only for an instant)."""
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
                tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if not tables:  # a new catalog; an existing one is not written at all
                    self._db.executescript(_SCHEMA)
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
        """One IMMEDIATE transaction: committed (and synced) on success, rolled back on error."""
        with self._lock, self._errors("write"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Txn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
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
