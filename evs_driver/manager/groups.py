"""Consistency groups: volumes of one backend snapshotted, reverted and cloned at one instant.

A group holds nothing in the backend; membership is ``Volume.group_id``. A group snapshot
is a ``GroupSnapshot`` row plus one ``Snapshot`` per member (``group_snapshot_id``), all
added in one catalog transaction and made by one backend call (one engine transaction with
every member's write lock held together): after a crash the backend has all of them or
none, and recovery settles each member snapshot as it settles a single one.
"""

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, faults, rules
from evs_driver.manager.base import ManagerBase
from evs_driver.manager.snapshots import check_snapshot_limit, new_snapshot

LOG = logging.getLogger(__name__)


class GroupOperations(ManagerBase):
    """What a user may do to groups and group snapshots."""

    def create_group(
        self, volume_refs: list[str], name: str | None = None, description: str | None = None
    ) -> cat.Group:
        """A group of volumes of one backend, none already in a group."""
        rules.check_name(name)
        rules.check_text("description", description)
        if not volume_refs:
            raise exception.InvalidInput(reason="a group needs at least one --volume")
        with self.catalog.reading() as txn:
            backend = self._members(txn, volume_refs)[0].backend
        self._require_enabled(backend)
        with self.lock(backend) as driver:
            driver.require_groups()  # before any row: an unsupported backend changes nothing
        with self.catalog.transaction() as txn:
            volumes = self._members(txn, volume_refs)
            group = self._new_group(name, description, volumes[0].backend)
            txn.add(group)
        with (
            self._backend(group.backend, self._forget(group)) as driver,
            self._failing_to(group, "error"),
        ):
            driver.create_group(None, group)
        with self.catalog.transaction() as txn:
            volumes = self._members(txn, [v.id for v in volumes])  # none joined another since
            for volume in volumes:
                txn.set_fields(volume, group_id=group.id)
            txn.move_status(group, "available", expect=("creating",), task=None)
        LOG.info("Created group %s of %d volume(s)", group.id, len(volumes))
        return group

    def update_group(
        self, ref: str, add: list[str] = (), remove: list[str] = (), name: str | None = None
    ) -> cat.Group:
        """Add volumes to a group or take them out (their snapshots stay theirs)."""
        rules.check_name(name)
        with self.catalog.transaction() as txn:
            group = self._find(txn, "group", ref)
            rules.expect_status("Group", group, ("available",), "updating")
            joining = self._members(txn, list(add), group.backend) if add else []
            leaving = [self._find(txn, "volume", r) for r in remove]
            for volume in leaving:
                if volume.group_id != group.id:
                    raise exception.InvalidInput(reason=f"volume {volume.id} is not in the group")
            for volume in joining:
                txn.set_fields(volume, group_id=group.id)
            for volume in leaving:
                txn.set_fields(volume, group_id=None)
            if name is not None:
                txn.set_fields(group, display_name=name)
        return group

    def delete_group(self, ref: str) -> None:
        """Delete a group that has no group snapshots; its volumes stay, in no group."""
        with self.catalog.transaction() as txn:
            group = self._find_or_gone(txn, "group", ref)
            if group is None:
                return
            held = txn.group_snapshots(group_id=group.id)
            if held:
                raise exception.InvalidOperation(
                    reason=f"group {group.id} has {len(held)} group snapshot(s); delete them "
                    "first (evs group snapshot-delete)"
                )
            for volume in txn.volumes(group_id=group.id):
                txn.set_fields(volume, group_id=None)
            txn.remove(group)
        LOG.info("Deleted group %s (its volumes stay)", group.id)

    def get_group(self, ref: str) -> cat.Group:
        """A group by id or unique name."""
        with self.catalog.reading() as txn:
            return self._find(txn, "group", ref)

    def list_groups(self) -> list[cat.Group]:
        """Every group, oldest first."""
        with self.catalog.reading() as txn:
            return txn.groups()

    def group_members(self, group: cat.Group) -> list[cat.Volume]:
        """The volumes of a group."""
        with self.catalog.reading() as txn:
            return txn.volumes(group_id=group.id)

    def group_snapshot_members(self, group_snapshot: cat.GroupSnapshot) -> list[cat.Snapshot]:
        """The member snapshots of a group snapshot."""
        with self.catalog.reading() as txn:
            return txn.snapshots(group_snapshot_id=group_snapshot.id)

    def list_group_snapshots(self, group_ref: str | None = None) -> list[cat.GroupSnapshot]:
        """Every group snapshot, or one group's."""
        with self.catalog.reading() as txn:
            if group_ref is None:
                return txn.group_snapshots()
            return txn.group_snapshots(group_id=self._find(txn, "group", group_ref).id)

    # -- group snapshots -------------------------------------------------------------------
    def create_group_snapshot(self, ref: str, name: str | None = None) -> cat.GroupSnapshot:
        """Snapshot every member at one instant (crash-consistent across the volumes)."""
        rules.check_snapshot_name(name)
        with self.catalog.transaction() as txn:
            group = self._find(txn, "group", ref)
            self._require_enabled(group.backend)
            rules.expect_status("Group", group, ("available",), "a group snapshot")
            volumes = txn.volumes(group_id=group.id)
            if not volumes:
                raise exception.InvalidOperation(reason=f"group {group.id} has no volumes")
            stamp = cat.now()
            group_snapshot = cat.GroupSnapshot(
                id=cat.new_id(),
                group_id=group.id,
                display_name=name,
                display_description=None,
                backend=group.backend,
                status="creating",
                created_at=stamp,
                updated_at=stamp,
                task=self._task("create"),
            )
            txn.add(group_snapshot)
            snapshots = []
            for volume in volumes:
                rules.expect_status("Volume", volume, rules.SNAPSHOT_SOURCE, "a snapshot")
                check_snapshot_limit(txn, volume, self.conf.max_snapshots_per_volume)
                snapshot = new_snapshot(volume, name, None, {}, self._task("create"))
                snapshot.group_snapshot_id = group_snapshot.id
                txn.add(snapshot)
                snapshots.append(snapshot)
        undo = self._forget(group_snapshot, *snapshots)
        with (
            self._backend(group.backend, undo) as driver,
            self._failing_to(group_snapshot, "error", *snapshots),
        ):
            faults.point("group_snapshot.before_backend")
            driver.create_group_snapshot(None, group_snapshot, snapshots)
            faults.point("group_snapshot.after_backend")
        with self.catalog.transaction() as txn:
            for item in (group_snapshot, *snapshots):
                txn.move_status(item, "available", expect=("creating",), task=None)
        LOG.info("Created group snapshot %s of %d volume(s)", group_snapshot.id, len(snapshots))
        return group_snapshot

    def delete_group_snapshot(self, ref: str) -> None:
        """Delete a group snapshot and its member snapshots."""
        with self._serve_lock, self.catalog.transaction() as txn:
            group_snapshot = self._find_or_gone(txn, "group snapshot", ref)
            if group_snapshot is None:
                return
            self._require_enabled(group_snapshot.backend)
            snapshots = txn.snapshots(group_snapshot_id=group_snapshot.id)
            for item in (group_snapshot, *snapshots):
                rules.expect_status(type(item).__name__, item, rules.DELETE_SNAPSHOT, "deleting")
            for snapshot in snapshots:
                self._refuse_served(snapshot)
                if txn.volumes(source_snapshot_id=snapshot.id, status="creating"):
                    raise exception.ConcurrentOperation(
                        kind="Snapshot", name=snapshot.id, reason="a volume is being made from it"
                    )
            undo = self._restore(group_snapshot, *snapshots)
            for item in (group_snapshot, *snapshots):
                txn.move_status(
                    item, "deleting", expect=rules.DELETE_SNAPSHOT, task=self._task("delete")
                )
        with self._backend(group_snapshot.backend, undo) as driver:
            with self._failing_to(group_snapshot, "error_deleting", *snapshots):
                driver.delete_group_snapshot(None, group_snapshot, snapshots)
                faults.point("delete_group_snapshot.after_backend")
            driver.collect()
        with self.catalog.transaction() as txn:
            for item in (*snapshots, group_snapshot):
                txn.remove(item)
        LOG.info("Deleted group snapshot %s", group_snapshot.id)

    def revert_group(self, ref: str, group_snapshot_ref: str) -> cat.Group:
        """Revert every member the group snapshot holds to its snapshot, at one instant."""
        with self.catalog.transaction() as txn:
            group = self._find(txn, "group", ref)
            group_snapshot = self._find(txn, "group snapshot", group_snapshot_ref)
            if group_snapshot.group_id != group.id:
                raise exception.InvalidInput(
                    reason=f"group snapshot {group_snapshot.id} is of group "
                    f"{group_snapshot.group_id}, not {group.id}"
                )
            self._require_enabled(group.backend)
            rules.expect_status("Group snapshot", group_snapshot, ("available",), "reverting")
            pairs = []
            for snapshot in txn.snapshots(group_snapshot_id=group_snapshot.id):
                volume = txn.volume(snapshot.volume_id)
                rules.expect_status("Volume", volume, rules.REVERT_VOLUME, "reverting")
                rules.expect_status("Snapshot", snapshot, rules.REVERT_SNAPSHOT, "reverting")
                pairs.append((volume, snapshot))
            records = [item for pair in pairs for item in pair]
            undo = self._restore(*records)
            for volume, snapshot in pairs:
                task = self._task("revert", snapshot_id=snapshot.id)
                txn.move_status(volume, "rollbacking", expect=rules.REVERT_VOLUME, task=task)
                txn.move_status(snapshot, "rollbacking", expect=rules.REVERT_SNAPSHOT, task=task)
        try:
            with self._backend(group.backend, undo) as driver:
                driver.revert_group_to_snapshot(None, pairs)
        except exception.BackendUnavailable:
            raise  # undone: nothing changed
        except BaseException:
            with self.catalog.transaction() as txn:
                for volume, snapshot in pairs:
                    txn.move_status(volume, "error_rollbacking", expect=("rollbacking",), task=None)
                    txn.move_status(snapshot, "available", expect=("rollbacking",), task=None)
            raise
        with self.catalog.transaction() as txn:
            for item in records:
                txn.move_status(item, "available", expect=("rollbacking",), task=None)
        LOG.info("Reverted group %s to group snapshot %s", group.id, group_snapshot.id)
        return group

    def create_group_from_snapshot(
        self, group_snapshot_ref: str, name: str | None = None
    ) -> cat.Group:
        """A new group whose volumes are linked clones of a group snapshot's members, made
        at one instant; each new volume takes its snapshot's name."""
        rules.check_name(name)
        with self.catalog.transaction() as txn:
            group_snapshot = self._find(txn, "group snapshot", group_snapshot_ref)
            self._require_enabled(group_snapshot.backend)
            rules.expect_status("Group snapshot", group_snapshot, ("available",), "a clone")
            snapshots = txn.snapshots(group_snapshot_id=group_snapshot.id)
            description = f"from group snapshot {group_snapshot.id}"
            group = self._new_group(name, description, group_snapshot.backend)
            txn.add(group)
            stamp = group.created_at
            volumes = []
            for snapshot in snapshots:
                rules.expect_status("Snapshot", snapshot, ("available",), "a clone")
                volume = cat.Volume(
                    id=cat.new_id(),
                    display_name=snapshot.display_name,
                    display_description=None,
                    size=snapshot.volume_size,
                    status="creating",
                    backend=snapshot.backend,
                    created_at=stamp,
                    updated_at=stamp,
                    source_snapshot_id=snapshot.id,
                    group_id=group.id,
                    task=self._task("create"),
                )
                txn.add(volume)
                volumes.append(volume)
        undo = self._forget(group, *volumes)
        with (
            self._backend(group.backend, undo) as driver,
            self._failing_to(group, "error", *volumes),
        ):
            driver.create_group_from_src(None, group, volumes, group_snapshot, snapshots)
        with self.catalog.transaction() as txn:
            for item in (group, *volumes):
                txn.move_status(item, "available", expect=("creating",), task=None)
        LOG.info("Created group %s from group snapshot %s", group.id, group_snapshot.id)
        return group

    # -- helpers ---------------------------------------------------------------------------
    def _new_group(self, name: str | None, description: str | None, backend: str) -> cat.Group:
        stamp = cat.now()
        return cat.Group(
            id=cat.new_id(),
            display_name=name,
            display_description=description,
            backend=backend,
            status="creating",
            created_at=stamp,
            updated_at=stamp,
            task=self._task("create"),
        )

    def _members(self, txn: cat.Txn, refs: list[str], backend: str | None = None):
        """The volumes ``refs`` name: distinct, on one backend, in no group yet."""
        volumes = [self._find(txn, "volume", ref) for ref in refs]
        if len({v.id for v in volumes}) != len(volumes):
            raise exception.InvalidInput(reason="a volume is given twice")
        backends = {v.backend for v in volumes} | ({backend} if backend else set())
        if len(backends) > 1:
            raise exception.InvalidInput(
                reason=f"a group's volumes are on one backend, not {', '.join(sorted(backends))}"
            )
        for volume in volumes:
            if volume.group_id:
                raise exception.InvalidOperation(
                    reason=f"volume {volume.id} is already in group {volume.group_id}"
                )
            rules.expect_status("Volume", volume, rules.SNAPSHOT_SOURCE, "joining a group")
        return volumes
