"""Cinder's generic-group driver calls, over any backend that can act on many devices at
one instant (``Backend.snapshot_all`` and friends).

``EVSDriver`` mixes this in. Group membership is the caller's (the catalog's, or Cinder's):
a group itself holds nothing in the backend, so creating, updating and deleting one are
bookkeeping; a group snapshot is one ``snapshot_all`` (one crash-consistent instant), a
group from a source one ``clone_all``. Return values follow Cinder's (model updates);
sizes of volumes are GiB.
"""

from oslo_log import log as logging

from evs_driver import exception
from evs_driver.units import GiB

LOG = logging.getLogger(__name__)


class GroupDriver:
    """The group calls; the driver sets ``backend``."""

    def create_group(self, context, group) -> dict:
        """Nothing to make in the backend: members are snapshotted together when asked."""
        self.require_groups()
        return {"status": "available"}

    def update_group(self, context, group, add_volumes=None, remove_volumes=None):
        """Membership is the caller's record: nothing changes in the backend."""
        self.require_groups()
        return None, None, None

    def delete_group(self, context, group, volumes) -> tuple[dict, list[dict]]:
        """Delete the group's ``volumes`` (Cinder deletes a group with its volumes); each
        keeps its own status, so a volume that failed is not reported gone, nor the rest
        reported failed."""
        updates = []
        for volume in volumes:
            try:
                self.backend.delete_volume(volume.id)
            except exception.EVSError as exc:
                LOG.error("Group %s: could not delete volume %s: %s", group.id, volume.id, exc)
                updates.append({"id": volume.id, "status": "error_deleting"})
            else:
                updates.append({"id": volume.id, "status": "deleted"})
        failed = any(update["status"] != "deleted" for update in updates)
        return {"status": "error_deleting" if failed else "deleted"}, updates

    def create_group_snapshot(self, context, group_snapshot, snapshots):
        """Snapshot every member at one instant: one transaction, all write locks held."""
        self.backend.snapshot_all([(s.volume_id, s.id) for s in snapshots])
        return {"status": "available"}, [{"id": s.id, "status": "available"} for s in snapshots]

    def delete_group_snapshot(self, context, group_snapshot, snapshots):
        """Delete each member snapshot (one already gone is fine)."""
        for snapshot in snapshots:
            self.backend.delete_snapshot(snapshot.id)
        return {"status": "deleted"}, [{"id": s.id, "status": "deleted"} for s in snapshots]

    def create_group_from_src(
        self,
        context,
        group,
        volumes,
        group_snapshot=None,
        snapshots=None,
        source_group=None,
        source_vols=None,
    ):
        """``volumes[i]`` as a linked clone of ``snapshots[i]`` (or ``source_vols[i]``), all
        at one instant."""
        sources = snapshots if group_snapshot is not None else source_vols
        if not sources or len(sources) != len(volumes):
            raise exception.InvalidInput(
                reason=f"group {group.id}: give one source for each of its {len(volumes)} volumes"
            )
        self.backend.clone_all(
            [(src.id, vol.id, vol.size * GiB) for src, vol in zip(sources, volumes, strict=True)]
        )
        return {"status": "available"}, [
            {"id": v.id, "status": "available", **self._location(v.id)} for v in volumes
        ]

    def revert_group_to_snapshot(self, context, pairs) -> None:
        """Revert each ``(volume, snapshot)`` pair (a group snapshot's), all or none."""
        self.backend.revert_all([(volume.id, snapshot.id) for volume, snapshot in pairs])

    def require_groups(self) -> None:
        """``NotSupportedByBackend`` unless the backend acts on many devices at one instant."""
        if not self.backend.supports_groups:
            raise self.backend.not_supported("consistent group snapshots")
