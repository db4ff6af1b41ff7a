"""The catalog: volumes and snapshots with their names, sizes and statuses, in SQLite.

Invariant: a row's status only changes through ``set_*_status`` (compare-and-set inside an
IMMEDIATE transaction), so two processes racing on one row cannot both move it. Rows in an
intermediate status carry a ``task`` naming the operation and its owner, which is what
crash recovery reads.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator

from evs_driver import exception, fileio

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
"""
# Columns added after the first release, with their definitions (added when missing).
_ADDED_COLUMNS = {"volumes": {"provider_auth": "TEXT"}}


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
    provider_auth: str | None = None  # "CHAP <username> <password>" of its targets, as Cinder's

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
class Attachment(_Record):
    """One initiator's access to a volume over a block protocol (iscsi, nvmeof, local)."""

    volume_id: str
    protocol: str
    initiator: str
    connector: dict
    created_at: str


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


_JSON_FIELDS = ("metadata", "task", "connector")


def _from_row(cls, row: sqlite3.Row):
    values = dict(row)
    for key in _JSON_FIELDS:
        if values.get(key) is not None:
            values[key] = json.loads(values[key])
    if "full_clone" in values:
        values["full_clone"] = bool(values["full_clone"])
    if "metadata" in values and values["metadata"] is None:
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

    def update(self, record: Volume | Snapshot, expect: Iterable[str] | None = None, **fields):
        """Set ``fields`` on ``record`` (and the object); with ``expect``, only from those statuses.

        Returns True when the row changed: the compare-and-set every status move goes through.
        """
        table = "volumes" if isinstance(record, Volume) else "snapshots"
        fields["updated_at"] = now()
        cols = _to_columns(fields)
        sets = ", ".join(f"{key} = ?" for key in cols)
        sql = f"UPDATE {table} SET {sets} WHERE id = ?"
        args = [*cols.values(), record.id]
        if expect is not None:
            expect = tuple(expect)
            sql += f" AND status IN ({','.join('?' * len(expect))})"
            args.extend(expect)
        changed = self._db.execute(sql, args).rowcount == 1
        if changed:
            for key, value in fields.items():
                setattr(record, key, value)
        return changed

    def remove(self, record: Volume | Snapshot) -> None:
        """Delete the row of ``record``."""
        table = "volumes" if isinstance(record, Volume) else "snapshots"
        self._db.execute(f"DELETE FROM {table} WHERE id = ?", (record.id,))

    # -- attachments ----------------------------------------------------------------
    def attachments(self, volume_id: str | None = None) -> list[Attachment]:
        """Every block attachment, or one volume's, oldest first."""
        where = {} if volume_id is None else {"volume_id": volume_id}
        clause = " AND ".join(f"{key} = ?" for key in where) or "1"
        rows = self._db.execute(
            f"SELECT * FROM attachments WHERE {clause} ORDER BY created_at, rowid",
            tuple(where.values()),
        ).fetchall()
        return [_from_row(Attachment, r) for r in rows]

    def add_attachment(self, attachment: Attachment) -> None:
        """Record an initiator's access (replacing the same initiator's earlier record)."""
        fields = _to_columns(dataclasses.asdict(attachment))
        cols = ", ".join(fields)
        marks = ", ".join("?" * len(fields))
        self._db.execute(
            f"INSERT OR REPLACE INTO attachments ({cols}) VALUES ({marks})", tuple(fields.values())
        )

    def remove_attachment(self, attachment: Attachment) -> None:
        """Forget an initiator's access."""
        self._db.execute(
            "DELETE FROM attachments WHERE volume_id = ? AND protocol = ? AND initiator = ?",
            (attachment.volume_id, attachment.protocol, attachment.initiator),
        )


class Catalog:
    """The SQLite catalog file under the state path."""

    def __init__(self, path: str):
        self.path = path
        try:
            fileio.private_dir(os.path.dirname(os.path.abspath(path)))
            # SQLite gives its -wal and -shm files the mode of the database file.
            fileio.create_private(path)
        except OSError as exc:
            raise exception.ConfigError(
                reason=f"cannot create the catalog directory for {path} (state_path): {exc}"
            ) from exc
        db = self._connect()
        try:
            db.executescript(_SCHEMA)
            _add_columns(db)
        except sqlite3.Error as exc:
            raise exception.ConfigError(
                reason=f"cannot use the catalog {path} (state_path): {exc}"
            ) from exc
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise exception.ConfigError(
                reason=f"cannot open the catalog {self.path} (state_path): {exc}"
            ) from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            db.close()
            raise exception.ConfigError(
                reason=f"cannot use the catalog {self.path} (state_path): {exc}"
            ) from exc
        return db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Txn]:
        """One IMMEDIATE transaction: committed on success, rolled back on error."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield Txn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()


def _add_columns(db: sqlite3.Connection) -> None:
    """Add the columns a catalog made by an older release lacks."""
    for table, columns in _ADDED_COLUMNS.items():
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
