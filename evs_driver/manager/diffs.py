"""Changed-block diffs: list them, write them as an incremental stream, apply a stream.

A stream from snapshot S1 to S2 goes onto a volume that holds S1's content: one whose
snapshot is S1 itself or was made by importing a stream that led to S1 (its metadata
``evs:diff_of`` names S1), and that has not changed since that snapshot (the backend's
diff says so, at the cost of what changed). Applying it ends by snapshotting the volume,
in the same hold of the backend, so the next stream (S2 to S3) finds its base. A full
stream (no ``from``) goes onto a volume that reads as zeros. A stream that fails part way
(a bad checksum, a cut) is undone: the volume goes back to its base.
"""

import contextlib
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import dataio, diffstream, exception, rules
from evs_driver.manager.base import ManagerBase
from evs_driver.manager.snapshots import check_snapshot_limit, new_snapshot
from evs_driver.units import GiB

LOG = logging.getLogger(__name__)
STDIO_PATH = re.compile(r"/proc/\d+/fd/([01])")  # how `evs` passes - (see operations)
DIFF_OF = "evs:diff_of"  # metadata of a snapshot an import made: the id of the one it copies


class DiffOperations(ManagerBase):
    """``snapshot diff``, ``snapshot export --from`` and ``volume import-diff``."""

    def diff_snapshots(self, ref: str, from_ref: str | None = None) -> dict:
        """The extents where snapshot ``ref`` differs from ``from_ref`` (None: everything
        it holds), with their totals."""
        new, old = self._pair(ref, from_ref)
        with self.lock(new.backend) as driver:
            new, old = self._still_available(new, old)
            extents = [
                {"offset": offset, "length": length, "kind": kind}
                for offset, length, kind in driver.changed_extents(old, new)
            ]
        data = sum(e["length"] for e in extents if e["kind"] == "data")
        zero = sum(e["length"] for e in extents if e["kind"] == "zero")
        return {
            "snapshot": new.id,
            "from": old.id if old else None,
            "size": new.volume_size * GiB,
            "extent_count": len(extents),
            "changed_bytes": data + zero,
            "data_bytes": data,
            "zero_bytes": zero,
            "extents": extents,
        }

    def export_diff(self, ref: str, path: str, from_ref: str | None = None) -> dict:
        """Write the stream from ``from_ref`` (None: a full stream) to ``ref`` at ``path``;
        the file appears only when complete, owner-only."""
        new, old = self._pair(ref, from_ref)
        with self.lock(new.backend) as driver:
            new, old = self._still_available(new, old)
            with self.catalog.reading() as txn:
                volume = txn.volume(new.volume_id)
            header = {
                "format": "evs-diff",
                "volume": {"id": new.volume_id, "name": volume.display_name if volume else None},
                "from": _described(old),
                "to": _described(new),
            }
            with _stream_out(path) as out, driver.open_device(new, False) as device:
                writer = diffstream.StreamWriter(out, header)
                for offset, length, kind in driver.changed_extents(old, new):
                    if kind == "zero":
                        writer.zero(offset, length)
                    else:
                        for start in range(offset, offset + length, diffstream.MAX_DATA):
                            piece = min(diffstream.MAX_DATA, offset + length - start)
                            writer.data(start, device.read(start, piece))
                writer.finish()
        LOG.info("Wrote the diff of snapshot %s from %s to %s", new.id, header["from"], path)
        return {"records": writer.records, "data_bytes": writer.data_bytes, **header}

    def import_diff(self, ref: str, path: str) -> dict:
        """Apply the stream at ``path`` to volume ``ref`` and snapshot the result; refuse,
        changing nothing, a stream whose base the volume does not hold."""
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed below, after the apply
        except OSError as exc:
            raise exception.InvalidInput(reason=f"cannot read {path}: {exc.strerror}") from exc
        with source:
            stream = diffstream.StreamReader(source, _named(path))
            header = stream.header
            volume = self.get_volume(ref)
            self._require_enabled(volume.backend)
            with self.lock(volume.backend) as driver:
                volume = self._data_record("volume", volume.id, rules.DATA_VOLUME, "importing")
                base = self._base_for(driver, volume, header)
                snapshot = self._new_snapshot(volume, header["to"])
                try:
                    written = self._apply(driver, volume, base, stream)
                    update = driver.create_snapshot(snapshot)
                except BaseException:
                    self._forget(snapshot)()
                    raise
            with self.catalog.transaction() as txn:
                txn.move_status(
                    snapshot, "available", expect=("creating",), task=None, **(update or {})
                )
        LOG.info("Applied diff %s to volume %s: snapshot %s", path, volume.id, snapshot.id)
        return {"volume": volume.id, "snapshot": snapshot.id, "data_bytes": written}

    def diff_bases(self, device_id: str) -> list[tuple[str, str | None]]:
        """``(id, name)`` of the snapshots volume or snapshot ``device_id`` may be compared
        with over NBD (``evs:changed-since:``): the other available ones of its volume."""
        with self.catalog.reading() as txn:
            snapshot = txn.snapshot(device_id)
            volume_id = snapshot.volume_id if snapshot is not None else device_id
            snapshots = txn.snapshots(volume_id=volume_id)
        return [
            (s.id, s.display_name or None)
            for s in snapshots
            if s.status == "available" and s.id != device_id
        ]

    # -- helpers ---------------------------------------------------------------------------
    def _pair(self, ref: str, from_ref: str | None):
        with self.catalog.reading() as txn:
            new = self._find(txn, "snapshot", ref)
            old = self._find(txn, "snapshot", from_ref) if from_ref else None
        if old is not None and old.volume_id != new.volume_id:
            raise exception.InvalidInput(
                reason=f"snapshot {old.id} is of volume {old.volume_id}, not of {new.volume_id} "
                f"like {new.id}: a diff is between two snapshots of one volume"
            )
        if old is not None and old.id == new.id:
            raise exception.InvalidInput(reason="a snapshot has no diff from itself")
        self._require_enabled(new.backend)
        return new, old

    def _still_available(self, new, old):
        """Both snapshots, checked again under the backend lock (a delete waits for us)."""
        new = self._data_record("snapshot", new.id, ("available",), "diffing")
        if old is not None:
            old = self._data_record("snapshot", old.id, ("available",), "diffing")
        return new, old

    def _base_for(self, driver, volume: cat.Volume, header: dict) -> cat.Snapshot | None:
        """The volume's snapshot that holds the stream's base (None for a full stream), or
        ``DiffBaseMismatch`` saying why the volume cannot take it."""
        mismatch = exception.DiffBaseMismatch
        if header["to"]["size"] > volume.size * GiB:
            raise mismatch(
                volume=volume.id,
                reason=f"the stream leads to {header['to']['size']} bytes, the volume has "
                f"{volume.size} GiB; extend it first (evs volume extend)",
            )
        with self.catalog.reading() as txn:
            snapshots = txn.snapshots(volume_id=volume.id)
        copies = {s.metadata.get(DIFF_OF, s.id): s for s in snapshots if s.status == "available"}
        held = copies.get(header["to"]["id"])
        if held is not None:
            copy = f" (as {held.id})" if held.id != header["to"]["id"] else ""
            raise mismatch(
                volume=volume.id, reason=f"it already holds snapshot {header['to']['id']}{copy}"
            )
        base = None
        if header["from"] is not None:
            base = copies.get(header["from"]["id"])
            if base is None:
                raise mismatch(
                    volume=volume.id,
                    reason=f"the stream starts from snapshot {header['from']['id']}, which the "
                    "volume has no copy of; apply the streams before it first",
                )
        if next(iter(driver.changed_extents(base, volume)), None) is not None:
            since = f"snapshot {base.id}" if base else "it was created (a full stream needs"
            raise mismatch(
                volume=volume.id,
                reason=f"it was written since {since}"
                + (" an empty volume)" if base is None else "; revert it to that snapshot first"),
            )
        return base

    def _new_snapshot(self, volume: cat.Volume, target: dict) -> cat.Snapshot:
        """The catalog row of the snapshot the import ends with, in ``creating``."""
        with self.catalog.transaction() as txn:
            check_snapshot_limit(txn, volume, self.conf.max_snapshots_per_volume)
            description = f"copy of snapshot {target['id']} (evs volume import-diff)"
            metadata = {DIFF_OF: target["id"]}
            task = self._task("create")
            snapshot = new_snapshot(volume, target.get("name"), description, metadata, task)
            txn.add(snapshot)
        return snapshot

    def _apply(self, driver, volume, base, stream: diffstream.StreamReader) -> int:
        """Write the stream's extents; on any failure put the volume back as it was."""
        written = 0
        try:
            with driver.open_device(volume, writable=True) as device:
                for record in stream.records():
                    if record.data is None:
                        device.write_zeroes(record.offset, record.length)
                    else:
                        device.write(record.offset, record.data)
                        written += record.length
                device.flush()
        except BaseException:
            LOG.info("Putting volume %s back: the diff stream failed part way", volume.id)
            if base is not None:
                driver.revert_to_snapshot(None, volume, base)
            else:
                with driver.open_device(volume, writable=True) as device:
                    device.discard(0, device.size)
                    device.flush()
            raise
        return written


@contextlib.contextmanager
def _stream_out(path: str) -> Iterator[BinaryIO]:
    """Where a stream goes: a pipe written in place, or a file that appears only whole
    (owner-only, synced)."""
    if not dataio.is_stream(path):
        with dataio.whole_file(path) as (fd, _partial), os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        return
    try:
        with open(path, "wb") as out:
            yield out
    except BrokenPipeError:
        raise exception.InvalidInput(
            reason=f"the reader of {_named(path)} went away before the stream's end"
        ) from None


def _named(path: str) -> str:
    """A path as errors name it: ``-`` (our ``/proc/PID/fd/0|1``) as the stream it is."""
    match = STDIO_PATH.fullmatch(path)
    if match is None:
        return path
    return "standard input" if match[1] == "0" else "standard output"


def _described(snapshot: cat.Snapshot | None) -> dict | None:
    """A snapshot as a stream header names it."""
    if snapshot is None:
        return None
    return {
        "id": snapshot.metadata.get(DIFF_OF, snapshot.id),
        "name": snapshot.display_name,
        "size": snapshot.volume_size * GiB,
        "created_at": snapshot.created_at,
    }
