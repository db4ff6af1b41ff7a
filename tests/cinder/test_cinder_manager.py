"""EVSCinderDriver driven by Cinder's real VolumeManager, with the data checked on our pool.

Every step goes through the manager's public methods, as ``cinder-volume`` runs them on an
RPC call; Cinder's database rows are made the way Cinder's API leaves them. After each
step the test reads the bytes on our backend directly.
"""

import os
import shutil
import tempfile

import pytest

pytest.importorskip("cinder", reason="OpenStack Cinder is not installed: run `tox -e cinder`")
pytest.importorskip("evs_driver.driver", reason="EVSDriver (evs_driver/driver.py) is missing")

import evs_cinder_harness as harness  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder import objects, quota  # noqa: E402
from cinder.objects import fields  # noqa: E402

from evs_driver import driver as evs_driver_module  # noqa: E402

GiB = harness.GiB
A = b"A" * 4096  # written before the snapshot
B = b"B" * 4096  # written after it
ZERO = bytes(4096)
TAIL = GiB - 4096  # last block of a 1 GiB volume


class TestCinderManagerFlow(harness.EVSManagerTestCase):
    def create_volume(self, size=1, **kwargs) -> objects.Volume:
        volume = self.new_volume(size, **kwargs)
        self.manager.create_volume(self.context, volume)
        return self.fresh(volume)

    def create_snapshot(self, volume) -> objects.Snapshot:
        snapshot = self.new_snapshot(volume)
        self.manager.create_snapshot(self.context, snapshot)
        return self.fresh(snapshot)

    def revert(self, volume, snapshot) -> None:
        # The statuses Cinder's API sets before it casts the revert to the manager.
        volume.update({"status": "reverting"})
        volume.save()
        snapshot.update({"status": fields.SnapshotStatus.RESTORING})
        snapshot.save()
        self.manager.revert_to_snapshot(self.context, volume, snapshot)

    def extend(self, volume, new_size) -> None:
        volume.update({"status": "extending"})
        volume.save()
        reservations = quota.QUOTAS.reserve(
            self.context, gigabytes=new_size - volume.size, project_id=volume.project_id
        )
        self.manager.extend_volume(self.context, volume, new_size, reservations)

    def test_full_lifecycle_keeps_every_byte_where_it_belongs(self):
        generic = self.mock_object(
            self.manager,
            "_revert_to_snapshot_generic",
            wraps=self.manager._revert_to_snapshot_generic,
        )

        # create volume
        vol = self.create_volume(size=1)
        self.assertEqual("available", vol.status)
        self.assertEqual(GiB, self.size_on_backend(vol.id))
        self.assertData(ZERO, vol.id, 0)
        self.write(vol.id, 0, A)
        self.write(vol.id, TAIL, A)

        # create snapshot; later writes to the volume do not reach it
        snap = self.create_snapshot(vol)
        self.assertEqual(fields.SnapshotStatus.AVAILABLE, snap.status)
        self.write(vol.id, 0, B)
        self.assertData(A, snap.id, 0)
        self.assertData(A, snap.id, TAIL)
        self.assertData(B, vol.id, 0)

        # create volume from snapshot, same size and larger
        same = self.create_volume(size=1, snapshot_id=snap.id)
        larger = self.create_volume(size=3, snapshot_id=snap.id)
        self.assertEqual(("available", "available"), (same.status, larger.status))
        self.assertData(A, same.id, 0)
        self.assertEqual(3 * GiB, self.size_on_backend(larger.id))
        self.assertData(A, larger.id, TAIL)
        self.assertData(ZERO, larger.id, GiB)
        self.assertData(ZERO, larger.id, 3 * GiB - 4096)
        self.write(same.id, 0, b"S" * 4096)  # its own writes stay its own
        self.assertData(A, snap.id, 0)
        self.assertData(A, larger.id, 0)

        # clone the volume: it gets the volume's current data
        clone = self.create_volume(size=1, source_volid=vol.id)
        self.assertEqual("available", clone.status)
        self.assertData(B, clone.id, 0)
        self.assertData(A, clone.id, TAIL)

        # revert, through our own revert, to the older of two snapshots
        newer = self.create_snapshot(vol)
        self.revert(vol, snap)
        generic.assert_not_called()
        vol, snap, newer = self.fresh(vol), self.fresh(snap), self.fresh(newer)
        self.assertEqual("available", vol.status)
        self.assertEqual(fields.SnapshotStatus.AVAILABLE, snap.status)
        self.assertData(A, vol.id, 0)
        self.assertData(B, newer.id, 0)  # the newer snapshot survives
        self.assertData(A, snap.id, 0)
        self.assertData(B, clone.id, 0)
        self.assertEqual(GiB, self.size_on_backend(vol.id))

        # extend: the data stays, the new range reads zeros, the snapshot keeps its size
        self.extend(vol, 2)
        vol = self.fresh(vol)
        self.assertEqual(("available", 2), (vol.status, vol.size))
        self.assertEqual(2 * GiB, self.size_on_backend(vol.id))
        self.assertData(A, vol.id, TAIL)
        self.assertData(ZERO, vol.id, GiB)
        self.assertEqual(GiB, self.size_on_backend(snap.id))

        # delete snapshots: volumes made from them keep their data
        self.manager.delete_snapshot(self.context, snap)
        self.manager.delete_snapshot(self.context, newer)
        self.assertFalse(self.backend.exists(snap.id))
        self.assertFalse(self.backend.exists(newer.id))
        self.assertData(A, larger.id, 0)
        self.assertData(b"S" * 4096, same.id, 0)

        # delete volumes: each goes from the backend and Cinder, the others stay
        for volume in (vol, same, clone):
            self.manager.delete_volume(self.context, volume)
            self.assertFalse(self.backend.exists(volume.id))
        self.assertData(A, larger.id, TAIL)
        self.manager.delete_volume(self.context, larger)
        self.assertFalse(self.backend.exists(larger.id))
        stats = self.backend.pool_stats()
        self.assertEqual((0, 0), (stats.volume_count, stats.snapshot_count))
        self.assertTrue(self.backend.check().clean)
        generic.assert_not_called()

    def test_revert_after_extend_keeps_the_size_and_zeros_past_the_snapshot(self):
        vol = self.create_volume(size=1)
        self.write(vol.id, 0, A)
        snap = self.create_snapshot(vol)
        self.extend(self.fresh(vol), 2)
        self.write(vol.id, GiB, B)
        self.revert(self.fresh(vol), snap)
        vol = self.fresh(vol)
        self.assertEqual(("available", 2), (vol.status, vol.size))
        self.assertEqual(2 * GiB, self.size_on_backend(vol.id))
        self.assertData(A, vol.id, 0)
        self.assertData(ZERO, vol.id, GiB)

    def test_reverting_twice_to_the_same_snapshot_works(self):
        vol = self.create_volume(size=1)
        self.write(vol.id, 0, A)
        snap = self.create_snapshot(vol)
        for _ in range(2):
            self.write(vol.id, 0, B)
            self.revert(self.fresh(vol), self.fresh(snap))
            self.assertData(A, vol.id, 0)
        self.assertData(A, snap.id, 0)

    def test_deleting_what_the_backend_no_longer_has_succeeds(self):
        vol = self.create_volume(size=1)
        snap = self.create_snapshot(vol)
        self.backend.delete_snapshot(snap.id)
        self.backend.delete_volume(vol.id)
        self.manager.delete_snapshot(self.context, snap)
        self.manager.delete_volume(self.context, vol)
        self.assertRaises(
            cinder_exception.SnapshotNotFound, objects.Snapshot.get_by_id, self.context, snap.id
        )
        self.assertRaises(
            cinder_exception.VolumeNotFound, objects.Volume.get_by_id, self.context, vol.id
        )


class TestCinderManagerErrors(harness.EVSManagerTestCase):
    def test_volume_from_a_snapshot_the_backend_lacks_ends_in_error(self):
        src = self.new_volume(size=1)
        self.manager.create_volume(self.context, src)
        snap = self.new_snapshot(src)
        self.manager.create_snapshot(self.context, snap)
        self.backend.delete_snapshot(snap.id)  # gone behind Cinder's back
        vol = self.new_volume(size=1, snapshot_id=snap.id)
        self.assertRaises(
            cinder_exception.VolumeBackendAPIException,
            self.manager.create_volume,
            self.context,
            vol,
        )
        self.assertEqual("error", self.fresh(vol).status)
        self.assertFalse(self.backend.exists(vol.id))

    def test_a_failing_revert_never_falls_back_to_cinders_generic_copy(self):
        vol = self.new_volume(size=1)
        self.manager.create_volume(self.context, vol)
        self.write(vol.id, 0, A)
        snap = self.new_snapshot(vol)
        self.manager.create_snapshot(self.context, snap)
        self.write(vol.id, 0, B)
        generic = self.mock_object(self.manager, "_revert_to_snapshot_generic")
        # Fault injection: no real backend raises NotImplementedError, the one exception
        # that makes Cinder's manager switch to its generic path.
        self.mock_object(
            evs_driver_module.EVSDriver, "revert_to_snapshot", side_effect=NotImplementedError
        )
        vol = self.fresh(vol)
        vol.update({"status": "reverting"})
        vol.save()
        snap = self.fresh(snap)
        snap.update({"status": fields.SnapshotStatus.RESTORING})
        snap.save()
        self.assertRaises(
            cinder_exception.VolumeBackendAPIException,
            self.manager.revert_to_snapshot,
            self.context,
            vol,
            snap,
        )
        generic.assert_not_called()
        self.assertEqual("error", self.fresh(vol).status)
        self.assertEqual(fields.SnapshotStatus.AVAILABLE, self.fresh(snap).status)
        self.assertData(B, vol.id, 0)

    def test_extending_a_volume_the_backend_lacks_ends_in_error_extending(self):
        vol = self.new_volume(size=1)
        self.manager.create_volume(self.context, vol)
        self.backend.delete_volume(vol.id)  # gone behind Cinder's back
        vol = self.fresh(vol)
        vol.update({"status": "extending"})
        vol.save()
        reservations = quota.QUOTAS.reserve(self.context, gigabytes=1, project_id=vol.project_id)
        # The manager records the failure in the status instead of raising it.
        self.manager.extend_volume(self.context, vol, 2, reservations)
        vol = self.fresh(vol)
        self.assertEqual(("error_extending", 1), (vol.status, vol.size))
        self.assertFalse(self.backend.exists(vol.id))

    def test_attaching_a_local_volume_without_kernel_nbd_says_what_is_missing(self):
        vol = self.new_volume(size=1)
        self.manager.create_volume(self.context, vol)
        connector = {"host": "compute1", "initiator": "iqn.1993-08.org.debian:01:abc"}
        error = self.assertRaises(
            cinder_exception.VolumeBackendAPIException,
            self.manager.initialize_connection,
            self.context,
            self.fresh(vol),
            connector,
        )
        # This host's kernel has no nbd module; the guest's test_cinder_attach attaches for real.
        self.assertIn("need nbd", str(error))


class TestCinderSetupErrors(harness.EVSManagerTestCase):
    def setUp(self):
        self.flags(reinit_driver_count=0)  # init_host would retry setup with sleeps
        super().setUp()

    def extra_backend_options(self) -> dict:
        return {"local_pool_create": "false"}

    def test_missing_pool_keeps_the_backend_away_from_the_scheduler(self):
        self.assertFalse(self.manager.driver.initialized)
        self.manager._report_driver_status(self.context)
        self.assertIsNone(self.manager.last_capabilities)  # nothing sent to the scheduler
        self.assertFalse(os.path.exists(self.pool_path))

    def test_do_setup_names_the_option_and_the_problem(self):
        error = self.assertRaises(
            cinder_exception.VolumeDriverException, self.manager.driver.do_setup, self.context
        )
        self.assertIn("local_pool_create is false", str(error))
        self.assertIn("[evs1] local_pool_path", str(error))


class TestCinderDefaultPoolPath(harness.EVSManagerTestCase):
    def setUp(self):
        # Cinder's own [DEFAULT] state_path, which our backend uses for its default pool path.
        self.state_path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.state_path)
        self.flags(state_path=self.state_path)
        super().setUp()

    def extra_backend_options(self) -> dict:
        return {"local_pool_path": None}

    def test_pool_defaults_to_cinders_state_path(self):
        self.assertTrue(self.manager.driver.initialized)
        vol = self.new_volume(size=1)
        self.manager.create_volume(self.context, vol)
        self.assertEqual("available", self.fresh(vol).status)
        self.assertEqual(os.path.join(self.state_path, "pools", self.BACKEND), self.backend.path)
        self.assertIn("metadata.sqlite", os.listdir(self.backend.path))
