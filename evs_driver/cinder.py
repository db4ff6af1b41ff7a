"""Run ``EVSDriver`` inside OpenStack Cinder (``pip install 'evs_driver[cinder]'``).

Operators set ``volume_driver = evs_driver.cinder.EVSCinderDriver`` in a backend section of
cinder.conf. Only this module and its helpers (``cinder_errors``, the group calls in
``cinder_groups``) import Cinder.
It hands Cinder's volume and snapshot objects to ``EVSDriver`` unchanged (they have the
attributes the core reads), turns ``EVSError`` into Cinder's exceptions so the manager sets
the right statuses, and reports statistics in the form Cinder's scheduler expects. Volumes
attach through Cinder's own target helper, except on a backend with its own protocol (rbd).
"""

import os

try:
    from cinder import exception as cinder_exception
    from cinder import interface
    from cinder.image import image_utils
    from cinder.volume import driver as cinder_driver
    from cinder.volume import volume_utils
    from oslo_utils import importutils
except ImportError as exc:
    raise ImportError(
        f"evs_driver.cinder runs inside OpenStack Cinder, which cannot be imported ({exc}); "
        "install it with: pip install 'evs_driver[cinder]'"
    ) from exc
from oslo_config import cfg

from evs_driver import dataio, exception
from evs_driver.attach.devices import VolumeDevices
from evs_driver.cinder_errors import cinder_errors, manage_errors, translated
from evs_driver.cinder_groups import CinderGroups
from evs_driver.conf.common import DEFAULT_OPTS
from evs_driver.conf.opts import backend_opts
from evs_driver.driver import EVSDriver
from evs_driver.service.exporter import NBDExporter

# evs_driver's [DEFAULT] options that a backend reads. Under Cinder, ``lock_timeout`` is set
# per backend section; ``state_path`` is Cinder's own [DEFAULT] option of that name.
PER_BACKEND_OPTS = [opt for opt in DEFAULT_OPTS if opt.name == "lock_timeout"]
FROM_CINDER_DEFAULT = ("state_path",)

# Statistics that describe one pool; Cinder's scheduler reads them from ``pools``.
POOL_KEYS = (
    "total_capacity_gb",
    "free_capacity_gb",
    "provisioned_capacity_gb",
    "max_over_subscription_ratio",
    "reserved_percentage",
    "thin_provisioning_support",
    "thick_provisioning_support",
    "multiattach",
    "online_extend_support",
    "total_volumes",
    "consistent_group_snapshot_enabled",
)


class CinderBackendConf:
    """Cinder's ``Configuration`` of a backend section, as ``EVSDriver`` reads options."""

    def __init__(self, configuration):
        self._configuration = configuration
        configuration.append_config_values(PER_BACKEND_OPTS)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self._configuration, name)
        except cfg.NoSuchOptError:
            if name in FROM_CINDER_DEFAULT:
                return getattr(cfg.CONF, name)
            raise


@interface.volumedriver
class EVSCinderDriver(CinderGroups, cinder_driver.VolumeDriver):
    """Cinder volume driver with redirect-on-write snapshots, backed by ``EVSDriver``."""

    VERSION = EVSDriver.VERSION
    # A pool lives on one host's disks (a local directory or an LVM volume group), so a
    # cluster of cinder-volume services on several hosts cannot share it.
    SUPPORTS_ACTIVE_ACTIVE = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        conf = CinderBackendConf(self.configuration)
        # A local volume's block device is the kernel NBD client on this process's own
        # NBD export of it (a unix socket in an owner-only directory).
        run_dir = os.path.join(conf.state_path, "evs-run", self._group)
        self.nbd_exporter = NBDExporter(os.path.join(run_dir, "nbd.sock"))
        self.evs = EVSDriver(configuration=conf, host=self.host, exporter=self.nbd_exporter)
        self._run_dir = run_dir
        self._devices: VolumeDevices | None = None
        # Cinder's own target helper, made exactly as its LVM driver makes it.
        helper = self.target_mapping[self.configuration.safe_get("target_helper")]
        self.target_driver = importutils.import_object(
            helper, configuration=self.configuration, executor=self._execute
        )
        self.protocol = self.target_driver.storage_protocol or self.target_driver.protocol

    @staticmethod
    def get_driver_options():
        """The options a cinder.conf backend section may set for this driver."""
        return backend_opts() + PER_BACKEND_OPTS

    # -- setup -------------------------------------------------------------------------
    def do_setup(self, context):
        """Load the configured backend and open (or create) its pool."""
        try:
            self.evs.do_setup(context)
        except exception.ConfigError as exc:
            raise cinder_exception.VolumeDriverException(message=exc.msg) from exc
        except exception.EVSError as exc:
            raise cinder_exception.VolumeBackendAPIException(
                data=f"evs_driver: setup failed for {self._group}: {exc}"
            ) from exc

    def check_for_setup_error(self):
        """Raise when the backend cannot serve requests."""
        with cinder_errors("setup check", self._group):
            self.evs.check_for_setup_error()
        # Cinder's option takes "0.5" too; refuse it at start, not at the first report.
        self._over_subscription_ratio()

    def _over_subscription_ratio(self):
        return volume_utils.get_max_over_subscription_ratio(
            self.configuration.max_over_subscription_ratio, supports_auto=True
        )

    @property
    def _group(self) -> str:
        return self.configuration.config_group or "DEFAULT"

    # -- statistics --------------------------------------------------------------------
    def get_volume_stats(self, refresh=False):
        """Backend statistics with one pool, in the form Cinder's scheduler filters on."""
        if refresh or not self._stats:
            with cinder_errors("reporting statistics", self._group):
                stats = dict(self.evs.get_volume_stats(refresh=True))
            # Cinder's option is a string ("20.0" or "auto"); the scheduler takes a number,
            # or "auto", which it then computes from the pool's use.
            stats["max_over_subscription_ratio"] = self._over_subscription_ratio()
            if not self._native:  # else the backend's own (ceph)
                stats["storage_protocol"] = self.protocol  # what the target helper exports
            pool = {key: stats.pop(key) for key in POOL_KEYS if key in stats}
            pool["pool_name"] = stats["volume_backend_name"]
            stats["pools"] = [pool]
            self._stats = stats
        return self._stats

    # -- volumes and snapshots -----------------------------------------------------------
    @translated("create volume")
    def create_volume(self, volume):
        """Create an empty thin volume."""
        return self.evs.create_volume(volume)

    @translated("delete volume")
    def delete_volume(self, volume):
        """Delete a volume; one already gone is not an error."""
        return self.evs.delete_volume(volume)

    @translated("extend volume")
    def extend_volume(self, volume, new_size):
        """Grow a volume to ``new_size`` GiB; its snapshots keep their sizes."""
        return self.evs.extend_volume(volume, new_size)

    @translated("create snapshot")
    def create_snapshot(self, snapshot):
        """Take a snapshot without copying data."""
        return self.evs.create_snapshot(snapshot)

    @translated("delete snapshot")
    def delete_snapshot(self, snapshot):
        """Delete a snapshot; one already gone is not an error."""
        return self.evs.delete_snapshot(snapshot)

    @translated("create volume from snapshot")
    def create_volume_from_snapshot(self, volume, snapshot):
        """Create a volume sharing the snapshot's blocks, at the volume's (maybe larger) size."""
        return self.evs.create_volume_from_snapshot(volume, snapshot)

    @translated("clone volume")
    def create_cloned_volume(self, volume, src_vref):
        """Create a volume sharing the source volume's current blocks."""
        return self.evs.create_cloned_volume(volume, src_vref)

    def revert_to_snapshot(self, context, volume, snapshot):
        """Revert in place to any snapshot of the volume, keeping every snapshot and its size."""
        with cinder_errors("revert to snapshot", volume, fallback_guard=True):
            return self.evs.revert_to_snapshot(context, volume, snapshot)

    # -- images ----------------------------------------------------------------------------
    # Cinder's generic image copy attaches the volume through os-brick, which has no NBD
    # connector; we go through a raw scratch file in ``image_conversion_dir`` instead. The
    # files are ours, so qemu-img runs without the root helper.
    def copy_image_to_volume(self, context, volume, image_service, image_id, disable_sparse=False):
        """Write an image (any format qemu-img reads) into the volume; zeros stay unmapped."""
        with image_utils.temporary_file(prefix=f"evs-image-{volume.id}-") as raw:
            image_utils.fetch_to_raw(
                context,
                image_service,
                image_id,
                raw,
                self.configuration.volume_dd_blocksize,
                size=volume.size,
                run_as_root=False,
                disable_sparse=disable_sparse,
            )
            with (
                cinder_errors("copy image to volume", volume),
                self.evs.open_device(volume, writable=True) as device,
            ):
                dataio.import_file(raw, device)

    def copy_volume_to_image(self, context, volume, image_service, image_meta):
        """Upload the volume as an image in ``image_meta``'s disk format."""
        with image_utils.temporary_file(prefix=f"evs-upload-{volume.id}-") as raw:
            with (
                cinder_errors("copy volume to image", volume),
                self.evs.open_device(volume, writable=False) as device,
            ):
                dataio.export_file(device, raw)
            volume_utils.upload_volume(
                context, image_service, image_meta, raw, volume, run_as_root=False
            )

    def copy_image_to_encrypted_volume(
        self, context, volume, image_service, image_id, disable_sparse=False
    ):
        """Refuse: writing through Cinder's encryptor needs an os-brick attachment."""
        raise cinder_exception.VolumeDriverException(
            message=f"evs_driver cannot write an image into encrypted volume {volume.id}: "
            "encrypted volumes from images are not supported"
        )

    # -- export and attach: our block device behind Cinder's target helper ---------------------
    @property
    def devices(self) -> VolumeDevices:
        """The block devices of this backend's volumes (an LV, or a kernel NBD device)."""
        if self._devices is None:
            os.makedirs(self._run_dir, mode=0o700, exist_ok=True)
            os.chmod(self._run_dir, 0o700)
            self._devices = self.evs.volume_devices(self.nbd_exporter)
        return self._devices

    @property
    def _native(self) -> bool:
        # A backend with its own attach protocol (rbd: os-brick's RBD connector) needs no
        # block device and no target helper.
        return bool(self.evs.native_protocol)

    def create_export(self, context, volume, connector):
        """Connect the volume's block device and export it with Cinder's target helper."""
        if self._native:
            return None
        with cinder_errors("create export", volume):
            path = self.devices.device_path(volume.id)
        export = self.target_driver.create_export(context, volume, path)
        return {"provider_location": export["location"], "provider_auth": export["auth"]}

    def ensure_export(self, context, volume):
        """Reconnect the volume's device after a restart and let the target helper check."""
        if self._native:
            return None
        with cinder_errors("ensure export", volume):
            path = self.devices.device_path(volume.id)
        return self.target_driver.ensure_export(context, volume, path)

    def remove_export(self, context, volume):
        """Remove the target, then flush and release the volume's block device."""
        if self._native:
            return
        self.target_driver.remove_export(context, volume)
        with cinder_errors("remove export", volume):
            self.devices.release(volume.id)

    def initialize_connection(self, volume, connector, initiator_data=None):
        """Connection information from the target helper (iscsi or nvmeof), or rbd's own."""
        if self._native:
            with cinder_errors("initialize connection", volume):
                return self.evs.initialize_connection(volume, connector)
        return self.target_driver.initialize_connection(volume, connector)

    def validate_connector(self, connector):
        """The target helper's check of the connector (an initiator IQN or a host NQN)."""
        if self._native:
            return None  # any host with the cluster's keys can attach an rbd volume
        return self.target_driver.validate_connector(connector)

    def terminate_connection(self, volume, connector, **kwargs):
        """Drop the connector's access unless another attachment on that host still uses it.

        As Cinder's LVM driver does: returns True when other attachments remain, so the
        manager keeps the export.
        """

        if self._native:
            return None  # nothing per host to take away, nor an export to keep

        def same_connector(attachment):
            return attachment.connector and self.target_driver.are_same_connector(
                attachment.connector, connector
            )

        attachments = volume.volume_attachment
        if volume.multiattach and sum(1 for a in attachments if same_connector(a)) > 1:
            return True
        self.target_driver.terminate_connection(volume, connector, **kwargs)
        return len(attachments) > 1

    def close(self) -> None:
        """Stop serving NBD and release the backend (tests; cinder-volume just exits)."""
        self.nbd_exporter.close()
        self.evs.close()

    def update_provider_info(self, volumes, snapshots):
        """Provider updates for Cinder's database at start: none, ids are our names."""
        with cinder_errors("update provider info", self._group):
            return self.evs.update_provider_info(volumes, snapshots)

    # -- managing existing volumes and snapshots -----------------------------------------
    def manage_existing_get_size(self, volume, existing_ref):
        """Size in GiB of the volume managing ``existing_ref`` makes."""
        with manage_errors("manage volume", volume, existing_ref):
            return self.evs.manage_existing_get_size(volume, existing_ref)

    def manage_existing(self, volume, existing_ref):
        """Adopt the backend device ``existing_ref`` names (``source-name``/``source-id``)."""
        with manage_errors("manage volume", volume, existing_ref):
            return self.evs.manage_existing(volume, existing_ref)

    def get_manageable_volumes(self, cinder_volumes, marker, limit, offset, sort_keys, sort_dirs):
        """Devices on the backend that could be managed."""
        with cinder_errors("list manageable volumes", self._group):
            entries = self.evs.get_manageable_volumes(cinder_volumes, None, None, 0, None, None)
        return volume_utils.paginate_entries_list(
            entries, marker, limit, offset, sort_keys, sort_dirs
        )

    @translated("unmanage volume")
    def unmanage(self, volume):
        """Forget the volume; its data stays on the backend."""
        return self.evs.unmanage(volume)

    def manage_existing_snapshot_get_size(self, snapshot, existing_ref):
        """Size in GiB of the snapshot ``existing_ref`` names."""
        with manage_errors("manage snapshot", snapshot, existing_ref):
            return self.evs.manage_existing_snapshot_get_size(snapshot, existing_ref)

    def manage_existing_snapshot(self, snapshot, existing_ref):
        """Adopt the backend snapshot ``existing_ref`` names."""
        with manage_errors("manage snapshot", snapshot, existing_ref):
            return self.evs.manage_existing_snapshot(snapshot, existing_ref)

    def get_manageable_snapshots(
        self, cinder_snapshots, marker, limit, offset, sort_keys, sort_dirs
    ):
        """Snapshots on the backend that could be managed."""
        with cinder_errors("list manageable snapshots", self._group):
            entries = self.evs.get_manageable_snapshots(cinder_snapshots, None, None, 0, None, None)
        return volume_utils.paginate_entries_list(
            entries, marker, limit, offset, sort_keys, sort_dirs
        )

    @translated("unmanage snapshot")
    def unmanage_snapshot(self, snapshot):
        """Forget the snapshot; its data stays on the backend."""
        return self.evs.unmanage_snapshot(snapshot)
