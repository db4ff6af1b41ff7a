"""EVSCinderDriver with an ``rbd`` backend in Cinder's real VolumeManager.

The whole lifecycle of ``test_cinder_manager`` runs again on a Ceph pool (a namespace per
test), then what only rbd has: ``rbd`` connection info that os-brick's own RBD connector
opens and reads, and Cinder's manage/unmanage flows. The cluster is the one
``tools/ceph-test-cluster`` started (``EVS_RBD_*``); without it these tests skip.
"""

import os
import uuid

import pytest

pytest.importorskip("cinder", reason="OpenStack Cinder is not installed: run `tox -e cinder`")
if not os.environ.get("EVS_RBD_CEPH_CONF"):
    pytest.skip(
        "no Ceph cluster (EVS_RBD_CEPH_CONF unset): run under tools/ceph-test-cluster run",
        allow_module_level=True,
    )
pytest.importorskip("rbd", reason="Ceph's Python bindings do not load: tools/link-ceph-bindings")

import evs_cinder_harness as harness  # noqa: E402
import test_cinder_manager  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder.objects import fields  # noqa: E402
from os_brick.initiator.connectors import rbd as brick_rbd  # noqa: E402

GiB = harness.GiB


def rbd_options() -> dict:
    """The backend section of an rbd backend on the test cluster, in a fresh namespace."""
    return {
        "volume_backend": "rbd",
        "volume_backend_name": "evs_rbd",
        "local_pool_path": None,
        "local_pool_capacity_gb": None,
        "local_pool_chunk_size": None,
        "rbd_ceph_conf": os.environ["EVS_RBD_CEPH_CONF"],
        "rbd_user": os.environ.get("EVS_RBD_USER"),
        "rbd_keyring": os.environ.get("EVS_RBD_KEYRING"),
        "rbd_pool": os.environ.get("EVS_RBD_POOL", "evs"),
        "rbd_namespace": "c-" + uuid.uuid4().hex[:12],
    }


class TestCinderRbdFlow(test_cinder_manager.TestCinderManagerFlow):
    """The lifecycle tests of the local backend, on RBD."""

    def extra_backend_options(self) -> dict:
        return rbd_options()


class TestCinderRbdOnly(harness.EVSManagerTestCase):
    def extra_backend_options(self) -> dict:
        return rbd_options()

    def managing_volume(self):
        """A volume row as Cinder's manage API leaves it for the manager."""
        return harness.cinder_utils.create_volume(
            self.context, status="managing", size=1, volume_type_id=self.vt["id"],
            host=self.pool_host(),
        )  # fmt: skip

    def test_stats_say_ceph_and_connections_are_rbd(self):
        stats = self.manager.driver.get_volume_stats(refresh=True)
        self.assertEqual("ceph", stats["storage_protocol"])
        volume = self.new_volume(1)
        self.manager.create_volume(self.context, volume)
        info = self.manager.driver.initialize_connection(volume, {"host": "compute-1"})
        self.assertEqual("rbd", info["driver_volume_type"])
        self.assertEqual(f"volume-{volume.id}", info["data"]["name"].rsplit("/", 1)[1])

    def test_os_bricks_rbd_connector_reads_and_writes_the_volume(self):
        # os-brick 7 splits "name" into exactly pool/image: the default namespace.
        self.manager.driver.evs.close()
        self.flags(rbd_namespace="", group=self.BACKEND)
        self.manager = harness.volume_manager.VolumeManager(
            host=self.host, service_name=self.BACKEND
        )
        self.manager.init_host(service_id=self.service.id)
        volume = self.new_volume(1)
        self.manager.create_volume(self.context, volume)
        self.write(volume.id, 0, b"c" * 4096)
        info = self.manager.driver.initialize_connection(volume, {"host": "compute-1"})
        data = dict(info["data"])
        with open(os.environ["EVS_RBD_KEYRING"]) as f:
            data["keyring"] = f.read()  # as cinderlib passes it; else /etc/ceph/... is read
        connector = brick_rbd.RBDConnector(root_helper=None, do_local_attach=False)
        device = connector.connect_volume(data)
        try:
            handle = device["path"]
            self.assertEqual(b"c" * 4096, handle.read(4096))
            handle.seek(GiB - 4096)
            handle.write(b"o" * 4096)
            handle.flush()
        finally:
            connector.disconnect_volume(data, device)
        self.assertData(b"o" * 4096, volume.id, GiB - 4096)
        self.manager.delete_volume(self.context, volume)

    def test_cinder_manages_and_unmanages_an_image_and_its_snapshot(self):
        backend = self.backend
        rbd = backend.cluster.rbd
        rbd.RBD().create(backend.cluster.ioctx, "legacy", GiB)
        with rbd.Image(backend.cluster.ioctx, "legacy") as image:
            image.write(b"L" * 4096, 0)
            image.create_snap("legacy-snap")
        listed = self.manager.driver.get_manageable_volumes([], None, 10, 0, ["size"], ["asc"])
        self.assertEqual([{"source-name": "legacy"}], [e["reference"] for e in listed])
        volume = self.managing_volume()
        self.manager.manage_existing(self.context, volume, {"source-name": "legacy"})
        volume = self.fresh(volume)
        self.assertEqual("available", volume.status)
        self.assertData(b"L" * 4096, volume.id, 0)
        snapshot = harness.cinder_utils.create_snapshot(
            self.context, volume.id, volume_type_id=self.vt["id"], status="creating"
        )
        self.manager.manage_existing_snapshot(
            self.context, snapshot, {"source-name": "legacy-snap"}
        )
        snapshot = self.fresh(snapshot)
        self.assertEqual(fields.SnapshotStatus.AVAILABLE, snapshot.status)
        self.write(volume.id, 0, b"N" * 4096)
        self.assertData(b"L" * 4096, snapshot.id, 0)
        bad = self.managing_volume()
        with self.assertRaises(cinder_exception.ManageExistingInvalidReference):
            self.manager.driver.manage_existing_get_size(bad, {"source-name": "absent"})
        self.manager.delete_snapshot(self.context, snapshot, unmanage_only=True)
        self.manager.delete_volume(self.context, volume, unmanage_only=True)
        self.assertTrue(self.backend.exists(volume.id))  # unmanaged: the data stays
