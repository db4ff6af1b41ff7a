"""``EVSDriver``: Cinder's volume driver contract over any ``evs_driver`` backend.

Method names, arguments and return values follow Cinder's ``VolumeDriver`` so a thin
adapter can run this class inside Cinder; nothing here imports Cinder. Volumes and
snapshots are Cinder-like objects (``id``, ``size`` in GiB, ``volume_id``,
``volume_size``); the backend is reached only through ``evs_driver.backends.base.Backend``.
"""

from collections.abc import Iterator

from oslo_log import log as logging
from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches

from evs_driver import exception
from evs_driver.attach.block import PROTOCOLS, BlockAttach
from evs_driver.attach.devices import VolumeDevices
from evs_driver.backends import base
from evs_driver.blockdev import DeviceBase
from evs_driver.conf import backend_option_error
from evs_driver.conf.opts import backend_opts
from evs_driver.groupdriver import GroupDriver
from evs_driver.interface import Exporter, VolumeDriver
from evs_driver.manageable import ManageableDriver
from evs_driver.units import GiB

LOG = logging.getLogger(__name__)
BACKEND_NAMESPACE = "evs_driver.backends"


def _gib(value: int) -> float:
    return round(value / GiB, 2)


class EVSDriver(VolumeDriver, ManageableDriver, GroupDriver):
    """Volumes and redirect-on-write snapshots on one backend group."""

    VERSION = "0.1.0"
    VENDOR = "evs_driver"

    def __init__(self, *args, configuration=None, exporter: Exporter | None = None, **kwargs):
        if configuration is None:
            raise exception.ConfigError(reason="EVSDriver needs its backend's configuration")
        self.configuration = configuration
        if hasattr(configuration, "append_config_values"):
            configuration.append_config_values(backend_opts())
        self.exporter = exporter or _NoServiceExporter()
        self.backend: base.Backend | None = None
        self._block: BlockAttach | None = None
        self._stats: dict = {}

    @property
    def backend_name(self) -> str:
        return getattr(self.configuration, "config_group", None) or "DEFAULT"

    # -- lifecycle ------------------------------------------------------------------
    def do_setup(self, context) -> None:
        """Load the configured backend through its entry point and set it up."""
        self.backend = self._load()
        self.backend.setup()
        LOG.debug("Backend %s (%s) is set up", self.backend_name, self.configuration.volume_backend)

    def _load(self) -> base.Backend:
        """The configured backend, loaded through its entry point, not set up."""
        name = self.configuration.volume_backend
        try:
            manager = stevedore_driver.DriverManager(
                BACKEND_NAMESPACE,
                name,
                invoke_on_load=True,
                invoke_args=(self.configuration, self.backend_name),
            )
        except NoMatches as exc:
            raise backend_option_error(
                self.configuration,
                "volume_backend",
                f"no backend {name!r} in the {BACKEND_NAMESPACE} entry points",
            ) from exc
        return manager.driver

    def validate_config(self) -> None:
        """Raise ``ConfigError`` when the configured backend cannot be loaded or its options
        cannot work."""
        self._load().validate_config()

    def create_pool(self) -> None:
        """Create the backend's pool where none is (the backend itself is not set up)."""
        self._load().create_pool()

    def check_for_setup_error(self) -> None:
        """Raise when the backend cannot serve requests."""
        if self.backend is None:
            raise exception.BackendError(backend=self.backend_name, reason="do_setup() did not run")
        self.backend.check_setup()

    def recover(self) -> None:
        """Let the backend settle work a crash interrupted (e.g. an LVM revert's intent)."""
        self.backend.recover()

    def hold_open(self) -> None:
        """Keep the backend's pool open (and other processes out) until ``close``."""
        self.backend.hold_open()

    def close(self) -> None:
        """Release the backend."""
        if self.backend is not None:
            self.backend.close()

    @staticmethod
    def get_driver_options() -> list:
        """The options a backend group of this driver may set."""
        return backend_opts()

    # -- volumes --------------------------------------------------------------------
    def _location(self, device_id: str) -> dict:
        kind = self.configuration.volume_backend
        return {"provider_location": f"{kind}://{self.backend_name}/{device_id}"}

    def create_volume(self, volume) -> dict:
        """Create an empty thin volume of ``volume.size`` GiB."""
        self.backend.create_volume(volume.id, volume.size * GiB)
        return self._location(volume.id)

    def delete_volume(self, volume) -> None:
        """Delete the volume; one already gone is not an error."""
        self.backend.delete_volume(volume.id)

    def extend_volume(self, volume, new_size: int) -> None:
        """Grow the volume to ``new_size`` GiB; its snapshots keep their sizes."""
        self.backend.extend_volume(volume.id, new_size * GiB)

    def create_volume_from_snapshot(self, volume, snapshot) -> dict:
        """A linked clone: shares the snapshot's blocks, zeros past the snapshot's size."""
        self.backend.create_volume_from_snapshot(snapshot.id, volume.id, volume.size * GiB)
        return self._location(volume.id)

    def create_cloned_volume(self, volume, src_vref) -> dict:
        """A linked clone of ``src_vref``'s current content."""
        self.backend.clone_volume(src_vref.id, volume.id, volume.size * GiB)
        return self._location(volume.id)

    def create_full_clone(self, volume, source, progress=None) -> dict:
        """A copy of a snapshot or volume that shares no blocks; ``progress(done, total)``."""
        self.backend.full_copy(source.id, volume.id, volume.size * GiB, progress)
        return self._location(volume.id)

    # -- snapshots ------------------------------------------------------------------
    def create_snapshot(self, snapshot) -> dict:
        """Record the volume's current blocks; no data is copied."""
        self.backend.create_snapshot(snapshot.volume_id, snapshot.id)
        return self._location(snapshot.id)

    def delete_snapshot(self, snapshot) -> None:
        """Delete the snapshot; one already gone is not an error."""
        self.backend.delete_snapshot(snapshot.id)

    def revert_to_snapshot(self, context, volume, snapshot) -> None:
        """Make the volume read as the snapshot; keeps its size and every snapshot."""
        self.backend.revert_to_snapshot(volume.id, snapshot.id)

    # -- exports and connections -------------------------------------------------------
    @property
    def native_protocol(self) -> str | None:
        """The backend's own attach protocol (rbd's); None when its volumes attach as block
        devices or NBD exports (and before ``do_setup``)."""
        return self.backend.native_volume_type if self.backend else None

    def volume_devices(self, exporter: Exporter) -> VolumeDevices:
        """This backend's volumes as block devices of this host, those without one of their
        own (``local``) through ``exporter``'s NBD exports."""
        return VolumeDevices(self.configuration, self.backend, exporter)

    @property
    def block(self) -> BlockAttach:
        """Block devices and iSCSI / NVMe-oF targets of this backend's volumes."""
        if self._block is None:
            self._block = BlockAttach(self.configuration, self.backend, self.exporter)
        return self._block

    def create_export(self, context, volume, connector) -> dict | None:
        """For a block protocol, the volume's device and target; returns the model update."""
        protocol = self._block_protocol(connector or {})
        if protocol is None:
            return None  # the NBD export is made when a host connects
        return self.block.create_export(volume, protocol) or None

    def ensure_export(self, context, volume) -> None:
        """Nothing to do here: the manager restores attachments from its records."""

    def remove_export(self, context, volume) -> None:
        """Stop serving the volume: its targets, block device and NBD export."""
        self.remove_block_export(volume, PROTOCOLS, release_device=True)
        self.exporter.unexport(volume.id)

    def _block_protocol(self, connector: dict) -> str | None:
        # A backend with its own protocol (rbd) keeps it unless the connector names another:
        # every os-brick connector carries an initiator, which alone would pick a target.
        if self.native_protocol and not connector.get("protocol"):
            return None
        return self.block.protocol_of(connector)

    def remove_block_export(self, volume, protocols, release_device: bool) -> None:
        """Remove the volume's targets of ``protocols``, and its block device when asked."""
        self.block.remove_export(volume, protocols, release_device)

    def attach_request(self, connector: dict) -> tuple[str, str] | None:
        """(protocol, checked initiator) of a block attach, None for an NBD export."""
        protocol = self._block_protocol(connector or {})
        if protocol is None:
            return None
        return protocol, self.block.initiator_of(protocol, connector)

    def block_exports(self) -> list[dict]:
        """This host's kernel NBD devices and targets, with their initiators."""
        return self.block.exports()

    def initialize_connection(self, volume, connector) -> dict:
        """Connection info for ``connector``: iscsi, nvmeof or local, else the NBD export.

        A block protocol comes from ``connector["protocol"]`` or, failing that, from the
        initiator key of the configured ``target_helper`` (``initiator`` for lioadm, ``nqn``
        for nvmet). Otherwise: a local device path when the backend has one, the backend's
        own protocol (``rbd``) unless ``connector["protocol"] == "nbd"``, else an NBD export, read-only for ``connector["access_mode"] == "ro"``, served where
        ``connector["nbd_listen"]`` (``{"socket": path}`` or ``{"host": h, "port": n}``) says,
        with ``connector["nbd_name"]`` as a second export name.
        """
        connector = connector or {}
        protocol = self._block_protocol(connector)
        if protocol is not None:
            initiator = self.block.initiator_of(protocol, connector)
            return self.block.initialize_connection(volume, protocol, initiator)
        return self._connection(volume.id, connector.get("access_mode") == "ro", connector)

    def terminate_connection(self, volume, connector, **kwargs) -> None:
        """End ``connector``'s access: its initiator's ACL, or the NBD export."""
        connector = connector or {}
        protocol = self._block_protocol(connector)
        if protocol is not None:
            initiator = self.block.initiator_of(protocol, connector)
            self.block.terminate_connection(volume, protocol, initiator)
            return
        self.exporter.unexport(volume.id)

    def initialize_connection_snapshot(self, snapshot, connector, **kwargs) -> dict:
        """Read-only connection info for a snapshot (Cinder uses it to back snapshots up)."""
        return self._connection(snapshot.id, True, connector or {})

    def terminate_connection_snapshot(self, snapshot, connector, **kwargs) -> None:
        """Stop serving the snapshot."""
        self.exporter.unexport(snapshot.id)

    def _connection(self, device_id: str, read_only: bool, connector: dict) -> dict:
        properties = dict(self.backend.connection_properties(device_id))
        if "device_path" in properties:
            return {"driver_volume_type": "local", "data": properties}
        native = self.native_protocol
        if native and properties and connector.get("protocol") != "nbd":
            properties["access_mode"] = "ro" if read_only else "rw"
            return {"driver_volume_type": native, "data": properties}
        listen = connector.get("nbd_listen")
        extra = {"listen": listen} if listen else {}  # only the service's exporter takes it
        if connector.get("nbd_name"):
            extra["name"] = connector["nbd_name"]  # a second export name, set by the manager
        properties.update(self.exporter.export(self.backend, device_id, read_only, **extra))
        properties["access_mode"] = "ro" if read_only else "rw"
        return {"driver_volume_type": "nbd", "data": properties}

    def served(self, device_id: str) -> dict | None:
        """The connection info of ``device_id``'s export, None when it is not served."""
        return self.exporter.served(device_id)

    def update_provider_info(self, volumes, snapshots) -> tuple[list, list]:
        """Nothing to update: provider locations are derived from ids."""
        return [], []

    # -- information ------------------------------------------------------------------
    def get_volume_stats(self, refresh: bool = False) -> dict:
        """Cinder's pool statistics; cached until ``refresh``."""
        if refresh or not self._stats:
            self._stats = self._update_stats()
        return self._stats

    def _update_stats(self) -> dict:
        stats = self.backend.pool_stats()
        conf = self.configuration
        return {
            "volume_backend_name": conf.volume_backend_name or self.backend_name,
            "vendor_name": self.VENDOR,
            "driver_version": self.VERSION,
            "storage_protocol": self.backend.storage_protocol,
            "total_capacity_gb": _gib(stats.total_bytes),
            "free_capacity_gb": _gib(stats.free_bytes),
            "provisioned_capacity_gb": _gib(stats.provisioned_bytes),
            "max_over_subscription_ratio": conf.max_over_subscription_ratio,
            "reserved_percentage": conf.reserved_percentage,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "multiattach": False,
            "online_extend_support": False,
            "total_volumes": stats.volume_count,
            "consistent_group_snapshot_enabled": self.backend.supports_groups,
        }

    def describe(self) -> dict:
        """Which backend kind serves this group and where its pool lives, for operators."""
        return {
            "volume_backend": self.configuration.volume_backend,
            "location": getattr(self.backend, "path", None),
        }

    def pool_stats(self) -> base.PoolStats:
        """The backend's raw capacity figures and device counts."""
        return self.backend.pool_stats()

    def device_usage(self, ref) -> base.DeviceUsage:
        """Size, mapped and exclusive bytes of a volume or snapshot."""
        return self.backend.device_usage(ref.id)

    def device_exists(self, ref) -> bool:
        """True when the backend holds this volume or snapshot."""
        return self.backend.exists(ref.id)

    def open_device(self, ref, writable: bool) -> DeviceBase:
        """The data of a volume or snapshot as a block device (import, export)."""
        return self.backend.open_device(ref.id, writable)

    def collect(self) -> None:
        """Reclaim deleted devices' space now."""
        self.backend.collect()

    def changed_extents(self, old, new) -> Iterator[tuple[int, int, str]]:
        """Where ``new`` differs from ``old`` (None: from zeros), from the backend's mapping."""
        return self.backend.changed_extents(old.id if old is not None else None, new.id)

    def check(self) -> base.CheckReport:
        """The backend's consistency check."""
        return self.backend.check()


class _NoServiceExporter(Exporter):
    """No exporter given (the embedded ``evs``, Cinder): attaching says what is missing."""

    def export(
        self,
        backend,
        device_id: str,
        read_only: bool,
        listen: dict | None = None,
        name: str | None = None,
    ) -> dict:
        """Always fails: serving a volume needs the long-running ``evs-volume`` service."""
        raise exception.AttachNeedsService(name=device_id)

    def unexport(self, device_id: str) -> None:
        """Nothing is served, so nothing to stop."""
