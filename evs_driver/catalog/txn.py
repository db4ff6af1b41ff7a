"""Reads and writes inside one catalog transaction.

Invariant: a row's status only changes through ``Txn.move_status``, a compare-and-set
inside the transaction that raises ``StatusChanged`` when the row is not in a status the
caller expects, so two processes racing on one row cannot both move it and a lost race is
never ignored. Rows in an intermediate status carry a ``task`` naming the operation and its
owner, which is what crash recovery reads.
"""

import dataclasses
import json
import sqlite3
from collections.abc import Iterable

from evs_driver import exception
from evs_driver.catalog.records import (
    Attachment,
    Group,
    GroupSnapshot,
    Schedule,
    Snapshot,
    Volume,
    now,
)

_JSON_FIELDS = ("metadata", "task", "connector")
_TABLES = {
    Volume: "volumes",
    Snapshot: "snapshots",
    Group: "groups",
    GroupSnapshot: "group_snapshots",
}
Record = Volume | Snapshot | Group | GroupSnapshot


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

    def group(self, group_id: str) -> Group | None:
        """The group with this id, or None."""
        return self._one(Group, group_id)

    def group_snapshot(self, group_snapshot_id: str) -> GroupSnapshot | None:
        """The group snapshot with this id, or None."""
        return self._one(GroupSnapshot, group_snapshot_id)

    def groups(self, name: str | None = None, **where) -> list[Group]:
        """Groups, optionally filtered by display name and exact column values."""
        if name is not None:
            where["display_name"] = name
        return [_from_row(Group, r) for r in self._select("groups", where)]

    def group_snapshots(self, name: str | None = None, **where) -> list[GroupSnapshot]:
        """Group snapshots, optionally filtered by display name and exact column values."""
        if name is not None:
            where["display_name"] = name
        return [_from_row(GroupSnapshot, r) for r in self._select("group_snapshots", where)]

    def _one(self, cls, record_id: str):
        sql = f"SELECT * FROM {_TABLES[cls]} WHERE id = ?"
        row = self._db.execute(sql, (record_id,)).fetchone()
        return _from_row(cls, row) if row else None

    def _select(self, table: str, where: dict) -> list[sqlite3.Row]:
        clause = " AND ".join(f"{key} = ?" for key in where) or "1"
        sql = f"SELECT * FROM {table} WHERE {clause} ORDER BY created_at, rowid"
        return self._db.execute(sql, tuple(where.values())).fetchall()

    def in_status(self, table: str, statuses: Iterable[str]) -> list:
        """Rows of ``table`` (volumes, snapshots, groups, group_snapshots) whose status is one
        of ``statuses``."""
        statuses = tuple(statuses)
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(
            f"SELECT * FROM {table} WHERE status IN ({marks}) ORDER BY rowid", statuses
        ).fetchall()
        cls = next(c for c, name in _TABLES.items() if name == table)
        return [_from_row(cls, r) for r in rows]

    # -- writes --------------------------------------------------------------------
    def add(self, record: Record) -> None:
        """Insert a new volume, snapshot, group or group snapshot."""
        table = _TABLES[type(record)]
        fields = _to_columns(dataclasses.asdict(record))
        cols = ", ".join(fields)
        marks = ", ".join("?" * len(fields))
        self._db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(fields.values()))

    def move_status(self, record: Record, status: str, expect: Iterable[str], **fields) -> None:
        """Move ``record`` to ``status`` (setting ``fields`` too) if it is in one of
        ``expect``; ``StatusChanged`` otherwise. The object follows the row."""
        expect = tuple(expect)
        where = f"status IN ({','.join('?' * len(expect))})"
        if not self._set(record, dict(fields, status=status), where, expect):
            current = self._one(type(record), record.id)
            raise exception.StatusChanged(
                kind=type(record).__name__,
                name=record.id,
                expected=" or ".join(expect),
                status=current.status if current else "deleted",
            )

    def set_fields(self, record: Record, **fields) -> None:
        """Set fields other than the status (progress, names) on ``record`` and the object."""
        if "status" in fields:
            raise ValueError("statuses move through move_status")
        self._set(record, fields, "1", ())

    def _set(self, record: Record, fields: dict, where: str, args: tuple) -> bool:
        table = _TABLES[type(record)]
        fields["updated_at"] = now()
        cols = _to_columns(fields)
        sets = ", ".join(f"{key} = ?" for key in cols)
        sql = f"UPDATE {table} SET {sets} WHERE id = ? AND {where}"
        if self._db.execute(sql, [*cols.values(), record.id, *args]).rowcount != 1:
            return False
        for key, value in fields.items():
            setattr(record, key, value)
        return True

    def remove(self, record: Record) -> None:
        """Delete the row of ``record``."""
        table = _TABLES[type(record)]
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

    # -- schedules ------------------------------------------------------------------
    def schedule(self, schedule_id: str) -> Schedule | None:
        """The schedule with this id, or None."""
        row = self._db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        return _from_row(Schedule, row) if row else None

    def schedules(self, **where) -> list[Schedule]:
        """Schedules filtered by exact column values, oldest first."""
        return [_from_row(Schedule, r) for r in self._select("schedules", where)]

    def add_schedule(self, schedule: Schedule) -> None:
        """Insert a new schedule (one per volume: the table refuses a second)."""
        fields = dataclasses.asdict(schedule)
        cols = ", ".join(fields)
        marks = ", ".join("?" * len(fields))
        self._db.execute(f"INSERT INTO schedules ({cols}) VALUES ({marks})", tuple(fields.values()))

    def update_schedule(self, schedule: Schedule, **fields) -> None:
        """Set a schedule's run times and outcome, on the row and the object."""
        fields["updated_at"] = now()
        sets = ", ".join(f"{key} = ?" for key in fields)
        self._db.execute(
            f"UPDATE schedules SET {sets} WHERE id = ?", (*fields.values(), schedule.id)
        )
        for key, value in fields.items():
            setattr(schedule, key, value)

    def remove_schedule(self, schedule: Schedule) -> None:
        """Delete a schedule (its snapshots stay)."""
        self._db.execute("DELETE FROM schedules WHERE id = ?", (schedule.id,))
