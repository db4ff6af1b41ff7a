"""Images in and out of our volumes through Cinder's manager, image_utils and real qemu-img.

Glance cannot run here, so Glance is Cinder's own fake image service, changed only to keep
the bytes an upload sends (Cinder's fake drops them). Everything between Glance and our
pool is real: Cinder's create-from-image flow and upload path, its image format inspector,
``qemu-img info`` and ``qemu-img convert``, and our driver's transfer.

Two privilege substitutions, since the tests own every file they touch: Cinder's privsep
context runs its entrypoints in this process (oslo.privsep's own ``set_client_mode(False)``)
instead of in a root daemon, and Cinder's root helper is ``env`` instead of
``sudo cinder-rootwrap`` (it is only used when the tests do not run as root).
"""

import os
import subprocess
import uuid

import pytest

pytest.importorskip("cinder", reason="OpenStack Cinder is not installed: run `tox -e cinder`")
pytest.importorskip("evs_driver.driver", reason="EVSDriver (evs_driver/driver.py) is missing")

import cinder.privsep  # noqa: E402
import cinder.utils  # noqa: E402
import evs_cinder_harness as harness  # noqa: E402
import fixtures  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder.image import glance  # noqa: E402
from cinder.tests.unit.image import fake as fake_image  # noqa: E402

GiB = harness.GiB
MiB = 1024**2
PATTERN = b"image-data-" * 1000  # 11,000 bytes: not block aligned


class StoringImageService(fake_image._FakeImageService):
    """Cinder's fake Glance, keeping uploaded data (as sparse files) instead of dropping it."""

    def __init__(self, directory: str):
        super().__init__()
        # As in Cinder's real GlanceImageService; the fake's MagicMock here would make
        # Cinder read every image from a path named after a mock.
        self.temp_images = None
        self.directory = directory

    def update(self, context, image_id, metadata, data=None, **kwargs):
        """Update the image's metadata and, when given, store its data."""
        image = super().update(context, image_id, metadata, **kwargs)
        if data is not None:
            with open(self.path(image_id), "wb") as out:
                while chunk := data.read(MiB):
                    if chunk.count(0) == len(chunk):
                        out.seek(len(chunk), os.SEEK_CUR)
                    else:
                        out.write(chunk)
                out.truncate()
        return image

    def path(self, image_id: str) -> str:
        """Where the uploaded data of ``image_id`` is kept."""
        return os.path.join(self.directory, image_id)


class TestCinderImages(harness.EVSManagerTestCase):
    def setUp(self):
        super().setUp()
        self.scratch = self.useFixture(fixtures.TempDir()).path
        self.flags(image_conversion_dir=os.path.join(self.scratch, "conversion"))
        self.images = StoringImageService(self.scratch)
        self.mock_object(
            glance, "get_remote_image_service", lambda context, ref: (self.images, ref)
        )
        self.mock_object(glance, "get_default_image_service", lambda: self.images)
        cinder.privsep.sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(cinder.privsep.sys_admin_pctxt.set_client_mode, True)
        self.mock_object(cinder.utils, "get_root_helper", return_value="env")

    # -- helpers ------------------------------------------------------------------------
    def raw_image_file(self, size: int) -> str:
        """A sparse raw disk of ``size`` bytes with PATTERN at 0 and at 1 MiB."""
        path = os.path.join(self.scratch, f"{uuid.uuid4()}.raw")
        with open(path, "wb") as handle:
            handle.truncate(size)
            handle.write(PATTERN)
            handle.seek(MiB)
            handle.write(PATTERN)
        return path

    def qemu_img(self, *args: str) -> str:
        return subprocess.run(
            ["qemu-img", *args], check=True, capture_output=True, text=True
        ).stdout

    def add_image(self, path: str, disk_format: str) -> str:
        """Register the file at ``path`` as an active image."""
        with open(path, "rb") as handle:
            image = self.images.create(
                self.context,
                {
                    "name": os.path.basename(path),
                    "status": "active",
                    "disk_format": disk_format,
                    "container_format": "bare",
                    "size": os.path.getsize(path),
                    "visibility": "private",
                    "properties": {},
                },
                data=handle,
            )
        return image["id"]

    def volume_from_image(self, image_id: str, size: int = 1):
        volume = self.new_volume(size=size, image_id=image_id)
        request_spec = {"image_id": image_id, "volume_properties": {"size": size}}
        self.manager.create_volume(self.context, volume, request_spec)
        return self.fresh(volume)

    def upload(self, volume, disk_format: str) -> str:
        """Upload ``volume`` as a new image; return the file holding the uploaded data."""
        image = self.images.create(
            self.context,
            {
                "name": "upload",
                "status": "queued",
                "disk_format": disk_format,
                "container_format": "bare",
                "properties": {},
            },
        )
        volume.update({"status": "uploading"})
        volume.save()
        meta = {"id": image["id"], "disk_format": disk_format, "container_format": "bare"}
        self.manager.copy_volume_to_image(self.context, volume.id, meta)
        return self.images.path(image["id"])

    # -- image to volume ------------------------------------------------------------------
    def test_raw_image_becomes_the_volumes_content(self):
        image_id = self.add_image(self.raw_image_file(3 * MiB), "raw")
        volume = self.volume_from_image(image_id)
        self.assertEqual("available", volume.status)
        self.assertData(PATTERN, volume.id, 0)
        self.assertData(PATTERN, volume.id, MiB)
        self.assertData(bytes(4096), volume.id, 3 * MiB)
        self.assertData(bytes(4096), volume.id, GiB - 4096)
        # Zeros of the sparse image were not written: only the two patterns take space.
        self.assertLess(self.backend.device_usage(volume.id).mapped_bytes, MiB)

    def test_qcow2_image_is_converted_by_qemu_img(self):
        raw = self.raw_image_file(GiB)
        qcow2 = raw + ".qcow2"
        self.qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, qcow2)
        volume = self.volume_from_image(self.add_image(qcow2, "qcow2"))
        self.assertEqual("available", volume.status)
        self.assertData(PATTERN, volume.id, 0)
        self.assertData(PATTERN, volume.id, MiB)

    def test_image_larger_than_the_volume_fails_and_leaves_no_data(self):
        raw = self.raw_image_file(2 * GiB)
        qcow2 = raw + ".qcow2"
        self.qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, qcow2)
        volume = self.new_volume(size=1, image_id=(image_id := self.add_image(qcow2, "qcow2")))
        self.assertRaises(
            cinder_exception.ImageUnacceptable,
            self.manager.create_volume,
            self.context,
            volume,
            {"image_id": image_id, "volume_properties": {"size": 1}},
        )
        self.assertEqual("error", self.fresh(volume).status)
        self.assertFalse(self.backend.exists(volume.id))

    def test_encrypted_volume_from_an_image_is_refused_clearly(self):
        volume = self.new_volume(size=1)
        self.manager.create_volume(self.context, volume)
        error = self.assertRaises(
            cinder_exception.VolumeDriverException,
            self.manager.driver.copy_image_to_encrypted_volume,
            self.context,
            volume,
            self.images,
            "any-image",
        )
        self.assertIn("encrypted", str(error))

    # -- volume to image ------------------------------------------------------------------
    def test_upload_as_raw_holds_the_volumes_bytes(self):
        volume = self.new_volume(size=1)
        self.manager.create_volume(self.context, volume)
        self.write(volume.id, 0, PATTERN)
        self.write(volume.id, GiB - len(PATTERN), PATTERN)
        uploaded = self.upload(self.fresh(volume), "raw")
        self.assertEqual(GiB, os.path.getsize(uploaded))
        with open(uploaded, "rb") as handle:
            self.assertEqual(PATTERN, handle.read(len(PATTERN)))
            handle.seek(GiB - len(PATTERN))
            self.assertEqual(PATTERN, handle.read())
        self.assertEqual("available", self.fresh(volume).status)

    def test_upload_as_qcow2_round_trips_through_qemu_img(self):
        volume = self.new_volume(size=1)
        self.manager.create_volume(self.context, volume)
        self.write(volume.id, MiB, PATTERN)
        qcow2 = self.upload(self.fresh(volume), "qcow2")
        self.assertIn("file format: qcow2", self.qemu_img("info", qcow2))
        back = self.add_image(qcow2, "qcow2")
        copy = self.volume_from_image(back)
        self.assertData(PATTERN, copy.id, MiB)
        self.assertData(bytes(4096), copy.id, 0)

    def test_upload_of_a_volume_the_backend_lacks_fails_and_deletes_the_image(self):
        volume = self.new_volume(size=1)
        self.manager.create_volume(self.context, volume)
        self.backend.delete_volume(volume.id)  # gone behind Cinder's back
        image = self.images.create(
            self.context,
            {
                "name": "upload",
                "status": "queued",
                "disk_format": "raw",
                "container_format": "bare",
                "properties": {},
            },
        )
        volume = self.fresh(volume)
        volume.update({"status": "uploading"})
        volume.save()
        meta = {"id": image["id"], "disk_format": "raw", "container_format": "bare"}
        self.assertRaises(
            cinder_exception.VolumeBackendAPIException,
            self.manager.copy_volume_to_image,
            self.context,
            volume.id,
            meta,
        )
        self.assertNotIn(image["id"], self.images.images)  # Cinder removed the queued image
        self.assertEqual([], os.listdir(os.path.join(self.scratch, "conversion")))
