"""Snapshot operations: create and delete (EVS rules 2 and 5)."""

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, faults, rules, scheduling
from evs_driver.manager.base import ManagerBase
from evs_driver.manager.volumes import _named

LOG = logging.getLogger(__name__)


def new_snapshot(volume: cat.Volume, name, description, metadata, task: dict) -> cat.Snapshot:
    """The catalog row of a snapshot of ``volume`` being created."""
    stamp = cat.now()
    return cat.Snapshot(
        id=cat.new_id(),
        display_name=name,
        display_description=description,
        volume_id=volume.id,
        volume_size=volume.size,
        status="creating",
        backend=volume.backend,
        created_at=stamp,
        updated_at=stamp,
        metadata=metadata or {},
        task=task,
    )


def check_snapshot_limit(txn: cat.Txn, volume: cat.Volume, limit: int) -> None:
    """Refuse one more user snapshot of ``volume`` past ``limit`` (a schedule's don't count)."""
    users = [
        s for s in txn.snapshots(volume_id=volume.id) if not scheduling.is_automatic(s.display_name)
    ]
    rules.check_snapshot_limit(volume.id, len(users), limit)


class SnapshotOperations(ManagerBase):
    """What a user may do to snapshots."""

    def create_snapshot(
        self,
        volume_ref: str,
        name: str | None = None,
        description: str | None = None,
        force: bool = False,
        metadata: dict | None = None,
    ) -> cat.Snapshot:
        """Snapshot a volume (``force`` is accepted as in Cinder API 3.66: in-use needs none)."""
        rules.check_snapshot_name(name)
        rules.check_text("description", description)
        return self._take_snapshot(volume_ref, name, description, metadata, automatic=False)

    def _take_snapshot(
        self, volume_ref: str, name, description, metadata, automatic: bool
    ) -> cat.Snapshot:
        """Snapshot a volume; a user's snapshot counts against max_snapshots_per_volume, a
        schedule's (``automatic``) against its schedule's retention instead."""
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", volume_ref)
            self._require_enabled(volume.backend)
            rules.expect_status("Volume", volume, rules.SNAPSHOT_SOURCE, "a snapshot")
            if not automatic:
                check_snapshot_limit(txn, volume, self.conf.max_snapshots_per_volume)
            snapshot = new_snapshot(volume, name, description, metadata, self._task("create"))
            txn.add(snapshot)
        with (
            self._backend(volume.backend, self._forget(snapshot)) as driver,
            self._failing_to(snapshot, "error"),
        ):
            update = driver.create_snapshot(snapshot)
            faults.point("create_snapshot.after_backend")
        with self.catalog.transaction() as txn:
            txn.move_status(
                snapshot, "available", expect=("creating",), task=None, **(update or {})
            )
        LOG.info(
            "Created snapshot %s (%s) of volume %s (%s)",
            snapshot.id,
            _named(snapshot),
            volume.id,
            _named(volume),
        )
        return snapshot

    def delete_snapshot(self, ref: str) -> None:
        """Delete a snapshot; volumes made from or reverted to it keep their data."""
        with self._serve_lock, self.catalog.transaction() as txn:
            snapshot = self._find_or_gone(txn, "snapshot", ref)
            if snapshot is None:
                LOG.info("Snapshot %s is already gone: nothing to delete", ref)
                return
            self._require_enabled(snapshot.backend)
            rules.expect_status("Snapshot", snapshot, rules.DELETE_SNAPSHOT, "deleting")
            if snapshot.group_snapshot_id:  # the group's instant stays whole, as in Cinder
                raise exception.InGroupSnapshot(
                    name=snapshot.id, group_snapshot=snapshot.group_snapshot_id
                )
            self._refuse_served(snapshot)
            if txn.volumes(source_snapshot_id=snapshot.id, status="creating"):
                raise exception.ConcurrentOperation(
                    kind="Snapshot", name=snapshot.id, reason="a volume is being created from it"
                )
            undo = self._restore(snapshot)
            task = self._task("delete")
            txn.move_status(snapshot, "deleting", expect=rules.DELETE_SNAPSHOT, task=task)
        with self._backend(snapshot.backend, undo) as driver:
            with self._failing_to(snapshot, "error_deleting"):
                driver.delete_snapshot(snapshot)
                faults.point("delete_snapshot.after_backend")
            driver.collect()  # rule 8: the freed space is usable when the delete returns
        with self.catalog.transaction() as txn:
            txn.remove(snapshot)
        LOG.info("Deleted snapshot %s (%s)", snapshot.id, _named(snapshot))
