"""Volume operations: create (empty, from a snapshot, cloned, full copy), delete, extend,
revert (EVS rules 3, 4, 5 and 6)."""

import time
from collections.abc import Callable

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, faults, rules
from evs_driver.interface import Progress
from evs_driver.manager.base import ManagerBase
from evs_driver.units import GiB

LOG = logging.getLogger(__name__)


class VolumeOperations(ManagerBase):
    """What a user may do to volumes."""

    def create_volume(
        self,
        size: int | None = None,
        name: str | None = None,
        description: str | None = None,
        snapshot: str | None = None,
        source_volume: str | None = None,
        full_clone: bool = False,
        backend: str | None = None,
        metadata: dict | None = None,
        progress: Progress | None = None,
    ) -> cat.Volume:
        """Create an empty volume, or one from a snapshot or volume (linked or full clone)."""
        rules.check_name(name)
        rules.check_text("description", description)
        if size is not None:
            rules.check_size(size)
        if snapshot and source_volume:
            raise exception.InvalidInput(reason="give a snapshot or a source volume, not both")
        if full_clone and not (snapshot or source_volume):
            raise exception.InvalidInput(reason="full_clone needs a snapshot or a source volume")
        if size is None and not (snapshot or source_volume):
            raise exception.InvalidSize(reason="size is required for an empty volume")
        source = None
        if snapshot or source_volume:
            source = self.get_snapshot(snapshot) if snapshot else self.get_volume(source_volume)
            backend = source.backend
            faults.point("create_volume.source_read")
        elif backend is not None and backend not in self.drivers:
            raise exception.InvalidInput(reason=f"no enabled backend named {backend!r}")
        backend = backend or next(iter(self.drivers))
        with self.lock(backend) as driver:
            volume = self._add_volume(
                driver, backend, size, name, description, source, full_clone, metadata
            )
            faults.point("create_volume.before_backend")
            with self._failing_to(volume, "error"):
                if full_clone:
                    update = driver.create_full_clone(
                        volume, source, self._progress(volume, progress)
                    )
                elif snapshot:
                    update = driver.create_volume_from_snapshot(volume, source)
                elif source_volume:
                    update = driver.create_cloned_volume(volume, source)
                else:
                    update = driver.create_volume(volume)
            faults.point("create_volume.after_backend")
        with self.catalog.transaction() as txn:
            txn.move_status(volume, "available", expect=("creating",), task=None, **(update or {}))
        how = "a full copy of " if full_clone else "from " if source else ""
        LOG.info(
            "Created volume %s (%s, %d GiB) on %s%s",
            volume.id,
            _named(volume),
            volume.size,
            backend,
            f", {how}{type(source).__name__.lower()} {source.id}" if source else "",
        )
        return volume

    def _add_volume(self, driver, backend, size, name, description, source, full_clone, metadata):
        with self.catalog.transaction() as txn:
            source_snapshot = source_volume = None
            if isinstance(source, cat.Snapshot):
                source = _reread(txn, source, txn.snapshot)
                rules.expect_status("Snapshot", source, rules.FROM_SNAPSHOT, "creating a volume")
                source_snapshot, minimum, what = source.id, source.volume_size, "the snapshot"
            elif isinstance(source, cat.Volume):
                source = _reread(txn, source, txn.volume)
                rules.expect_status("Volume", source, rules.CLONE_SOURCE, "cloning")
                source_volume, minimum, what = source.id, source.size, "the source volume"
            if source is not None:
                size = source.size if size is None else size  # a snapshot's size is its volume's
                rules.check_not_smaller(size, minimum, what)
            stats = driver.get_volume_stats(refresh=True)
            raw = driver.pool_stats()  # unrounded bytes: tiny pools must not round to 0 GiB
            rules.check_oversubscription(
                backend,
                raw.total_bytes / GiB,
                raw.provisioned_bytes / GiB,
                size,
                stats["max_over_subscription_ratio"],
                stats["reserved_percentage"],
            )
            stamp = cat.now()
            volume = cat.Volume(
                id=cat.new_id(),
                display_name=name,
                display_description=description,
                size=size,
                status="creating",
                backend=backend,
                created_at=stamp,
                updated_at=stamp,
                source_snapshot_id=source_snapshot,
                source_volume_id=source_volume,
                full_clone=full_clone,
                progress=0 if full_clone else None,
                metadata=metadata or {},
                task=self._task("create", full_clone=full_clone),
            )
            txn.add(volume)
        return volume

    def _progress(self, volume: cat.Volume, report: Progress | None) -> Callable[[int, int], None]:
        """Record a full clone's progress in the catalog (whole percents, at most about once
        a second: each record is a synced transaction) and pass it on."""
        last = [-1, 0.0]  # the percent recorded, and when

        def update(done: int, total: int) -> None:
            percent = done * 100 // total if total else 100
            now = time.monotonic()
            if percent != last[0] and (percent == 100 or last[0] < 0 or now - last[1] >= 1):
                last[:] = percent, now
                with self.catalog.transaction() as txn:
                    txn.set_fields(volume, progress=percent)
                faults.point("full_clone.progress")
            if report:
                report(done, total)

        return update

    def delete_volume(self, ref: str, cascade: bool = False) -> None:
        """Delete a volume (and with ``cascade`` its snapshots); a missing volume is fine."""
        with self._serve_lock, self.catalog.transaction() as txn:
            volume = self._find_or_gone(txn, "volume", ref)
            if volume is None:
                LOG.info("Volume %s is already gone: nothing to delete", ref)
                return
            self._require_enabled(volume.backend)
            rules.expect_status("Volume", volume, rules.DELETE_VOLUME, "deleting")
            snapshots = txn.snapshots(volume_id=volume.id)
            if snapshots and not cascade:
                raise exception.VolumeHasSnapshots(volume=volume.id, count=len(snapshots))
            _busy(txn, volume)
            for snap in snapshots:
                self._refuse_served(snap)
                rules.expect_status("Snapshot", snap, rules.DELETE_SNAPSHOT, "a cascade delete")
                if txn.volumes(source_snapshot_id=snap.id, status="creating"):
                    raise exception.ConcurrentOperation(
                        kind="Snapshot", name=snap.id, reason="a volume is being created from it"
                    )
            undo = self._restore(volume, *snapshots)
            task = self._task("delete")
            for item in (volume, *snapshots):
                txn.move_status(item, "deleting", expect=(item.status,), task=task)
        with self._backend(volume.backend, undo) as driver:
            for snap in snapshots:
                with self._failing_to(snap, "error_deleting", volume):
                    driver.delete_snapshot(snap)
                with self.catalog.transaction() as txn:
                    txn.remove(snap)
                faults.point("delete_volume.snapshot_deleted")
            with self._failing_to(volume, "error_deleting"):
                driver.delete_volume(volume)
            faults.point("delete_volume.after_backend")
            driver.collect()  # rule 8: the freed space is usable when the delete returns
        with self.catalog.transaction() as txn:
            for schedule in txn.schedules(volume_id=volume.id):
                txn.remove_schedule(schedule)  # a schedule of no volume has nothing to do
                LOG.info("Deleted schedule %s with volume %s", schedule.id, volume.id)
            txn.remove(volume)
        LOG.info(
            "Deleted volume %s (%s) and %d snapshot(s)%s",
            volume.id,
            _named(volume),
            len(snapshots),
            f": {', '.join(s.id for s in snapshots)}" if snapshots else "",
        )

    def extend_volume(self, ref: str, new_size: int) -> cat.Volume:
        """Grow a volume to ``new_size`` GiB; its snapshots keep their sizes."""
        rules.check_size(new_size)
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            self._require_enabled(volume.backend)
            rules.expect_status("Volume", volume, rules.EXTEND_VOLUME, "extending")
            rules.check_extend(volume.size, new_size)
            _busy(txn, volume)
            undo = self._restore(volume)
            task = self._task("extend", new_size=new_size)
            txn.move_status(volume, "extending", expect=rules.EXTEND_VOLUME, task=task)
        old_size = volume.size
        with (
            self._backend(volume.backend, undo) as driver,
            self._failing_to(volume, "error_extending"),
        ):
            driver.extend_volume(volume, new_size)
            faults.point("extend_volume.after_backend")
        with self.catalog.transaction() as txn:
            txn.move_status(volume, "available", expect=("extending",), size=new_size, task=None)
        LOG.info(
            "Extended volume %s (%s) from %d to %d GiB",
            volume.id,
            _named(volume),
            old_size,
            new_size,
        )
        return volume

    def revert_volume(self, ref: str, snapshot_ref: str) -> cat.Volume:
        """Make a volume read as any of its own snapshots; every snapshot survives."""
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            snapshot = self._find(txn, "snapshot", snapshot_ref)
            if snapshot.volume_id != volume.id:
                raise exception.InvalidInput(
                    reason=f"snapshot {snapshot.id} belongs to volume {snapshot.volume_id}, not "
                    f"{volume.id}; a volume reverts only to its own snapshots"
                )
            self._require_enabled(volume.backend)
            rules.expect_status("Volume", volume, rules.REVERT_VOLUME, "reverting")
            rules.expect_status("Snapshot", snapshot, rules.REVERT_SNAPSHOT, "reverting")
            _busy(txn, volume)
            undo = self._restore(volume, snapshot)
            task = self._task("revert", snapshot_id=snapshot.id)
            txn.move_status(volume, "rollbacking", expect=rules.REVERT_VOLUME, task=task)
            txn.move_status(snapshot, "rollbacking", expect=rules.REVERT_SNAPSHOT, task=task)
        try:
            with self._backend(volume.backend, undo) as driver:
                driver.revert_to_snapshot(None, volume, snapshot)
                faults.point("revert.after_backend")
        except exception.BackendUnavailable:
            raise  # undone: nothing changed
        except BaseException as exc:
            with self.catalog.transaction() as txn:
                txn.move_status(volume, "error_rollbacking", expect=("rollbacking",), task=None)
                txn.move_status(snapshot, "available", expect=("rollbacking",), task=None)
            LOG.error(
                "Reverting volume %s to snapshot %s failed; it is error_rollbacking: %s",
                volume.id,
                snapshot.id,
                getattr(exc, "msg", exc),
            )
            raise
        with self.catalog.transaction() as txn:
            txn.move_status(volume, "available", expect=("rollbacking",), task=None)
            txn.move_status(snapshot, "available", expect=("rollbacking",), task=None)
        LOG.info(
            "Reverted volume %s (%s) to snapshot %s (%s)",
            volume.id,
            _named(volume),
            snapshot.id,
            _named(snapshot),
        )
        return volume


def _busy(txn: cat.Txn, volume: cat.Volume) -> None:
    """Refuse to change a volume while a snapshot or a clone of it is being created."""
    creating = txn.snapshots(volume_id=volume.id, status="creating")
    creating += txn.volumes(source_volume_id=volume.id, status="creating")
    if creating:
        raise exception.ConcurrentOperation(
            kind="Volume", name=volume.id, reason=f"{creating[0].id} is being created from it"
        )


def _reread(txn: cat.Txn, record, get):
    """``record`` as the catalog holds it now: it may have changed while we waited."""
    current = get(record.id)
    if current is None:
        kind = type(record).__name__
        raise exception.NotFound(kind=kind, name=f"{record.id} (deleted meanwhile)")
    return current


def _named(record) -> str:
    """A record's name for the audit log."""
    return f"name {record.display_name!r}" if record.display_name else "no name"
