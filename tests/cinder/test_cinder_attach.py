"""Attaching a ``local`` volume inside Cinder: our block device behind Cinder's own LIO helper.

Runs in the QEMU guest (``tox -e cinder-guest``), where the kernel has nbd and LIO and
open-iscsi is the initiator: Cinder's real VolumeManager, its real ``LioAdm`` target
driver running the real ``cinder-rtstool``, and os-brick's real ``ISCSIConnector``. Two
privilege substitutions, as in ``test_cinder_images``: Cinder's root helper is ``env``
(the tests are root) and os-brick's privsep runs in this process.
"""

import os
import stat
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("cinder", reason="OpenStack Cinder is not installed: run `tox -e cinder`")
if os.environ.get("EVS_LVM_GUEST") != "1":  # the guest's PYTHONPATH also has the repository
    pytest.skip("needs nbd, LIO and open-iscsi: `tox -e cinder-guest`", allow_module_level=True)

import cinder.privsep  # noqa: E402
import cinder.utils  # noqa: E402
import evs_cinder_harness as harness  # noqa: E402
from cinder.volume import driver as cinder_driver  # noqa: E402
from os_brick.initiator import connector as brick_connector  # noqa: E402
from os_brick.privileged import default as brick_privileged  # noqa: E402
from test_cinder_images import PATTERN, MiB, StoringImageService  # noqa: E402

from tests.functional.attach import hostenv  # noqa: E402


def setUpModule():
    hostenv.start_daemons()
    # rtslib refuses to start without LIO's state directory; Debian's rtslib-fb-targetctl
    # service makes it on a real host (our own LIO target makes it itself).
    for dbroot in ("/etc/rtslib-fb-target", "/etc/target"):  # Debian's rtslib-fb, PyPI's
        os.makedirs(dbroot, mode=0o700, exist_ok=True)


def tearDownModule():
    hostenv.stop_daemons()


def _rtstool_on_path(directory: str) -> str:
    """A ``cinder-rtstool`` for this interpreter (the venv's script names the host's python)."""
    path = os.path.join(directory, "cinder-rtstool")
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nfrom cinder.cmd.rtstool import main\n")
        f.write("sys.exit(main())\n")
    os.chmod(path, stat.S_IRWXU)
    return directory


def _dd_read(device: str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``device`` read by ``dd`` with O_DIRECT."""
    return subprocess.run(
        [
            "dd",
            f"if={device}",
            "bs=4096",
            f"skip={offset // 4096}",
            f"count={length // 4096}",
            "iflag=direct",
            "status=none",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout


def _dd_write(device: str, offset: int, data: bytes) -> None:
    """Write ``data`` to ``device`` with ``dd`` (O_DIRECT, then a flush)."""
    subprocess.run(
        [
            "dd",
            f"of={device}",
            "bs=4096",
            f"seek={offset // 4096}",
            "oflag=direct",
            "conv=fsync",
            "status=none",
        ],
        input=data,
        check=True,
        capture_output=True,
        timeout=120,
    )


class TestCinderAttachThroughLio(harness.EVSManagerTestCase):
    def extra_backend_options(self) -> dict:
        return {
            "target_helper": "lioadm",
            "target_protocol": "iscsi",
            "target_ip_address": "127.0.0.1",
            "nbd_io_timeout": "5",
        }

    def setUp(self):
        bin_dir = _rtstool_on_path(tempfile.mkdtemp(prefix="evs-cinder-bin-"))
        os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
        self.mock_object(cinder.utils, "get_root_helper", return_value="env")
        # Cinder's default state_path is its package directory, read-only in the guest.
        self.flags(state_path=tempfile.mkdtemp(prefix="evs-cinder-state-"))
        super().setUp()
        brick_privileged.set_client_mode(False)
        self.addCleanup(brick_privileged.set_client_mode, True)
        cinder.privsep.sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(cinder.privsep.sys_admin_pctxt.set_client_mode, True)
        self.flags(lock_path=tempfile.mkdtemp(prefix="evs-cinder-locks-"), group="oslo_concurrency")
        self.connector = brick_connector.get_connector_properties("env", "127.0.0.1", False, False)
        self.iscsi = brick_connector.InitiatorConnector.factory("ISCSI", "env")

    def close_driver(self):
        self.manager.driver.close()

    def test_a_compute_host_attaches_over_iscsi_and_detaches(self):
        volume = self.new_volume(size=1)
        self.manager.create_volume(self.context, volume)
        self.write(volume.id, 0, PATTERN)
        info = self.manager.initialize_connection(self.context, self.fresh(volume), self.connector)
        self.assertEqual("iscsi", info["driver_volume_type"])
        data = info["data"]
        self.assertEqual("CHAP", data["auth_method"])
        device = self.iscsi.connect_volume(data)["path"]
        # Another process does the I/O, as on a compute host: in this process a blocking
        # read would stall eventlet's hub, and with it the NBD server that answers it.
        self.assertEqual(PATTERN[:4096], _dd_read(device, 0, 4096))
        _dd_write(device, MiB, b"C" * 4096)
        self.iscsi.disconnect_volume(data, {"path": device})
        self.manager.terminate_connection(self.context, volume.id, self.connector)
        self.manager.remove_export(self.context, volume.id)
        self.assertData(b"C" * 4096, volume.id, MiB)  # flushed through nbd before the release
        self.assertEqual([], [r for r in self._lio_targets() if volume.id in r])

    def test_cinders_generic_image_upload_attaches_the_local_volume_through_os_brick(self):
        volume = self.new_volume(size=1)
        self.manager.create_volume(self.context, volume)
        self.write(volume.id, 0, PATTERN)
        images = StoringImageService(tempfile.mkdtemp(prefix="evs-cinder-images-"))
        image = images.create(
            self.context,
            {"name": "up", "status": "queued", "disk_format": "raw", "container_format": "bare"},
        )
        meta = {"id": image["id"], "disk_format": "raw", "container_format": "bare"}
        # Cinder's own copy_volume_to_image: _attach_volume, os-brick, upload, _detach_volume.
        cinder_driver.VolumeDriver.copy_volume_to_image(
            self.manager.driver, self.context, self.fresh(volume), images, meta
        )
        with open(images.path(image["id"]), "rb") as f:
            self.assertEqual(PATTERN, f.read(len(PATTERN)))
        self.assertEqual([], [r for r in self._lio_targets() if volume.id in r])

    def _lio_targets(self) -> list[str]:
        import rtslib_fb

        return [t.wwn for t in rtslib_fb.RTSRoot().targets]
