"""Cinder's generic-group calls for ``EVSCinderDriver``, forwarded to ``EVSDriver``'s.

Cinder asks a driver about every group. For a group whose type has
``consistent_group_snapshot_enabled="<is> True"`` we answer with one backend transaction
(a group snapshot is one crash-consistent instant for all members); for any other group
we raise ``NotImplementedError``, which is how Cinder's volume manager chooses its generic
path (member by member, through our single-volume calls). Imported by ``evs_driver.cinder``
only, after it has checked that Cinder imports.
"""

from cinder.volume import volume_utils

from evs_driver.cinder_errors import cinder_errors


def _consistent(group_or_snapshot) -> None:
    """Leave groups of other types to Cinder's generic path."""
    if not volume_utils.is_group_a_cg_snapshot_type(group_or_snapshot):
        raise NotImplementedError()


class CinderGroups:
    """The group half of ``EVSCinderDriver``, which provides ``evs`` and ``remove_export``."""

    def create_group(self, context, group):
        """A consistent group: nothing to make in the backend, but the backend must have them."""
        _consistent(group)
        with cinder_errors("create group", group):
            return self.evs.create_group(context, group)

    def update_group(self, context, group, add_volumes=None, remove_volumes=None):
        """Membership is Cinder's record; the backend only has to support groups."""
        _consistent(group)
        with cinder_errors("update group", group):
            return self.evs.update_group(context, group, add_volumes, remove_volumes)

    def delete_group(self, context, group, volumes):
        """Take down each member's export, then delete the members (each with its status)."""
        _consistent(group)
        for volume in volumes:
            self.remove_export(context, volume)
        with cinder_errors("delete group", group):
            return self.evs.delete_group(context, group, volumes)

    def create_group_snapshot(self, context, group_snapshot, snapshots):
        """Snapshot every member at one instant, all or none."""
        _consistent(group_snapshot)
        with cinder_errors("create group snapshot", group_snapshot):
            return self.evs.create_group_snapshot(context, group_snapshot, snapshots)

    def delete_group_snapshot(self, context, group_snapshot, snapshots):
        """Delete each member snapshot (one already gone is fine)."""
        _consistent(group_snapshot)
        with cinder_errors("delete group snapshot", group_snapshot):
            return self.evs.delete_group_snapshot(context, group_snapshot, snapshots)

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
        """The new group's volumes as linked clones of the sources, made at one instant."""
        _consistent(group)
        with cinder_errors("create group from source", group):
            return self.evs.create_group_from_src(
                context, group, volumes, group_snapshot, snapshots, source_group, source_vols
            )
