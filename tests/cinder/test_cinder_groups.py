"""Generic volume groups through Cinder's real VolumeManager on a local pool.

A group whose type has ``consistent_group_snapshot_enabled="<is> True"`` goes to our
driver's group calls (one backend transaction per group snapshot or group clone); any
other group takes Cinder's generic path, member by member, and must keep working. Rows are
made the way Cinder's API leaves them before it casts to the manager; bytes are checked on
the backend directly.
"""

import pytest

pytest.importorskip("cinder", reason="OpenStack Cinder is not installed: run `tox -e cinder`")
pytest.importorskip("evs_driver.driver", reason="EVSDriver (evs_driver/driver.py) is missing")

import evs_cinder_harness as harness  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder import objects  # noqa: E402
from cinder.objects import fields  # noqa: E402
from cinder.scheduler import host_manager  # noqa: E402
from cinder.tests.unit import utils as cinder_utils  # noqa: E402
from cinder.volume import group_types  # noqa: E402
from oslo_utils import timeutils  # noqa: E402

from evs_driver import exception  # noqa: E402

CONSISTENT = {"consistent_group_snapshot_enabled": "<is> True"}


def block(label: bytes) -> bytes:
    return label * 4096


class GroupTestCase(harness.EVSManagerTestCase):
    GROUP_SPECS = CONSISTENT

    def setUp(self):
        super().setUp()
        self.group_type = group_types.create(self.context, "evs-groups", self.GROUP_SPECS)
        # Spies on the backend (they call through): which path Cinder took.
        self.snapshot_all = self.mock_object(
            self.backend, "snapshot_all", wraps=self.backend.snapshot_all
        )
        self.create_snapshot = self.mock_object(
            self.backend, "create_snapshot", wraps=self.backend.create_snapshot
        )

    # -- Cinder rows, as the API leaves them ------------------------------------------------
    def new_group(self, status="creating", **kwargs) -> objects.Group:
        return cinder_utils.create_group(
            self.context,
            host=self.pool_host(),
            status=status,
            group_type_id=self.group_type["id"],
            volume_type_ids=[self.vt["id"]],
            **kwargs,
        )

    def create_group(self, members: int = 2) -> tuple[objects.Group, list[objects.Volume]]:
        group = self.new_group()
        self.manager.create_group(self.context, group)
        volumes = []
        for _ in range(members):
            volume = self.new_volume(group_id=group.id)
            self.manager.create_volume(self.context, volume)
            volumes.append(self.fresh(volume))
        return self.fresh(group), volumes

    def snapshot_group(self, group) -> tuple[objects.GroupSnapshot, list[objects.Snapshot]]:
        group_snapshot = cinder_utils.create_group_snapshot(
            self.context, group.id, group_type_id=group.group_type_id
        )
        for volume in objects.VolumeList.get_all_by_generic_group(self.context, group.id):
            cinder_utils.create_snapshot(
                self.context, volume.id, group_snapshot_id=group_snapshot.id
            )
        self.manager.create_group_snapshot(self.context, group_snapshot)
        return self.fresh(group_snapshot), self.members_of(group_snapshot)

    def members_of(self, group_snapshot) -> list[objects.Snapshot]:
        return list(
            objects.SnapshotList.get_all_for_group_snapshot(self.context, group_snapshot.id)
        )

    def group_from(self, sources, source_field: str, **source) -> list[objects.Volume]:
        group = self.new_group()
        volumes = [self.new_volume(group_id=group.id, **{source_field: src.id}) for src in sources]
        self.manager.create_group_from_src(self.context, group, **source)
        self.assertEqual(fields.GroupStatus.AVAILABLE, self.fresh(group).status)
        return [self.fresh(volume) for volume in volumes]

    def exists(self, device_id: str) -> bool:
        return self.backend.exists(device_id)


class TestConsistentGroups(GroupTestCase):
    def test_stats_offer_consistent_group_snapshots_to_the_scheduler(self):
        self.manager._report_driver_status(self.context)
        (pool,) = self.manager.last_capabilities["pools"]
        self.assertIs(True, pool["consistent_group_snapshot_enabled"])
        hosts = host_manager.HostManager()
        hosts.update_service_capabilities(
            "volume", self.host, self.manager.last_capabilities, None, timeutils.utcnow()
        )
        backends = list(hosts.get_all_backend_states(self.context))
        properties = {"resource_type": {"extra_specs": CONSISTENT}, "size": 1}
        passed = hosts.get_filtered_backends(
            backends, properties, filter_class_names=["CapabilitiesFilter"]
        )
        self.assertEqual([f"{self.host}#evs_local"], [b.backend_id for b in passed])

    def test_group_snapshot_is_one_backend_transaction_holding_what_came_before(self):
        group, (vol1, vol2) = self.create_group()
        self.assertEqual(fields.GroupStatus.AVAILABLE, group.status)
        self.write(vol1.id, 0, block(b"1"))
        self.write(vol2.id, 0, block(b"2"))

        group_snapshot, (snap1, snap2) = self.snapshot_group(group)
        self.write(vol1.id, 0, block(b"x"))
        self.write(vol2.id, 0, block(b"y"))

        self.assertEqual(fields.GroupSnapshotStatus.AVAILABLE, group_snapshot.status)
        self.assertEqual({"available"}, {snap1.status, snap2.status})
        self.snapshot_all.assert_called_once()
        (pairs,), _ = self.snapshot_all.call_args
        self.assertEqual({(vol1.id, snap1.id), (vol2.id, snap2.id)}, set(pairs))
        self.create_snapshot.assert_not_called()
        by_volume = {s.volume_id: s for s in (snap1, snap2)}
        self.assertData(block(b"1"), by_volume[vol1.id].id, 0)
        self.assertData(block(b"2"), by_volume[vol2.id].id, 0)

    def test_group_from_group_snapshot_and_from_source_group(self):
        group, (vol1, vol2) = self.create_group()
        self.write(vol1.id, 0, block(b"1"))
        self.write(vol2.id, 0, block(b"2"))
        group_snapshot, snapshots = self.snapshot_group(group)
        self.write(vol1.id, 0, block(b"x"))
        self.write(vol2.id, 0, block(b"y"))
        expected = {vol1.id: block(b"1"), vol2.id: block(b"2")}

        from_snapshot = self.group_from(snapshots, "snapshot_id", group_snapshot=group_snapshot)
        for volume, snapshot in zip(from_snapshot, snapshots, strict=True):
            self.assertEqual("available", volume.status)
            self.assertEqual(f"local://{self.BACKEND}/{volume.id}", volume.provider_location)
            self.assertData(expected[snapshot.volume_id], volume.id, 0)

        from_group = self.group_from([vol1, vol2], "source_volid", source_group=group)
        self.assertData(block(b"x"), from_group[0].id, 0)
        self.assertData(block(b"y"), from_group[1].id, 0)
        self.create_snapshot.assert_not_called()

    def test_update_group_adds_and_removes_members_of_the_next_group_snapshot(self):
        group, (vol1, vol2) = self.create_group()
        outsider = self.new_volume()
        self.manager.create_volume(self.context, outsider)
        group.status = fields.GroupStatus.UPDATING
        group.save()
        self.manager.update_group(
            self.context, group, add_volumes=outsider.id, remove_volumes=vol2.id
        )
        self.assertEqual(fields.GroupStatus.AVAILABLE, self.fresh(group).status)
        self.assertEqual(group.id, self.fresh(outsider).group_id)
        self.assertIsNone(self.fresh(vol2).group_id)

        _, snapshots = self.snapshot_group(group)
        self.assertEqual({vol1.id, outsider.id}, {s.volume_id for s in snapshots})

    def test_delete_group_snapshot_then_group_removes_them_from_the_backend(self):
        group, volumes = self.create_group()
        group_snapshot, snapshots = self.snapshot_group(group)

        self.manager.delete_group_snapshot(self.context, group_snapshot)
        self.assertFalse(any(self.exists(s.id) for s in snapshots))
        self.assertRaises(
            cinder_exception.GroupSnapshotNotFound,
            objects.GroupSnapshot.get_by_id,
            self.context,
            group_snapshot.id,
        )
        self.manager.delete_group(self.context, group)
        self.assertFalse(any(self.exists(v.id) for v in volumes))
        self.assertRaises(
            cinder_exception.GroupNotFound, objects.Group.get_by_id, self.context, group.id
        )

    def test_a_failed_group_snapshot_leaves_no_member_snapshot(self):
        group, (vol1, vol2) = self.create_group()
        self.backend.delete_volume(vol2.id)  # gone behind Cinder's back
        group_snapshot = cinder_utils.create_group_snapshot(
            self.context, group.id, group_type_id=group.group_type_id
        )
        snapshots = [
            cinder_utils.create_snapshot(self.context, v.id, group_snapshot_id=group_snapshot.id)
            for v in (vol1, vol2)
        ]
        self.assertRaises(
            cinder_exception.VolumeBackendAPIException,
            self.manager.create_group_snapshot,
            self.context,
            group_snapshot,
        )
        self.assertEqual(fields.GroupSnapshotStatus.ERROR, self.fresh(group_snapshot).status)
        self.assertEqual({"error"}, {self.fresh(s).status for s in snapshots})
        self.assertFalse(any(self.exists(s.id) for s in snapshots))

    def test_a_member_that_cannot_be_deleted_is_reported_alone(self):
        group, (vol1, vol2) = self.create_group()
        delete = self.backend.delete_volume

        def fail_for_vol2(volume_id):
            # Fault injection: no real part of a local pool refuses a delete on demand.
            if volume_id == vol2.id:
                raise exception.BackendError(backend=self.BACKEND, reason="injected")
            delete(volume_id)

        self.mock_object(self.backend, "delete_volume", side_effect=fail_for_vol2)
        self.assertRaises(
            cinder_exception.VolumeDriverException,
            self.manager.delete_group,
            self.context,
            group,
        )
        self.assertFalse(self.exists(vol1.id))
        self.assertTrue(self.exists(vol2.id))
        self.assertEqual("deleted", self.fresh(vol1).status)
        self.assertEqual("error_deleting", self.fresh(vol2).status)
        self.assertEqual(fields.GroupStatus.ERROR, self.fresh(group).status)


class TestGenericGroups(GroupTestCase):
    """A group type without the consistent spec: Cinder's generic path, member by member."""

    GROUP_SPECS = {}

    def test_generic_group_lifecycle_uses_the_single_volume_calls(self):
        create_group = self.mock_object(
            self.manager.driver.evs, "create_group", wraps=self.manager.driver.evs.create_group
        )
        group, (vol1, vol2) = self.create_group()
        self.assertEqual(fields.GroupStatus.AVAILABLE, group.status)
        create_group.assert_not_called()
        self.write(vol1.id, 0, block(b"1"))
        self.write(vol2.id, 0, block(b"2"))

        group_snapshot, snapshots = self.snapshot_group(group)
        self.assertEqual(fields.GroupSnapshotStatus.AVAILABLE, group_snapshot.status)
        self.snapshot_all.assert_not_called()
        self.assertEqual(2, self.create_snapshot.call_count)
        clones = self.group_from(snapshots, "snapshot_id", group_snapshot=group_snapshot)
        expected = {vol1.id: block(b"1"), vol2.id: block(b"2")}
        for volume, snapshot in zip(clones, snapshots, strict=True):
            self.assertData(expected[snapshot.volume_id], volume.id, 0)

        self.manager.delete_group_snapshot(self.context, group_snapshot)
        self.assertFalse(any(self.exists(s.id) for s in snapshots))
        self.manager.delete_group(self.context, group)
        self.assertFalse(self.exists(vol1.id) or self.exists(vol2.id))
