"""The contract between the ``VolumeManager`` and a volume driver.

Written as Cinder's ``cinder/interface`` writes its driver capabilities: the docstrings are
the contract, stated as the caller needs it. The manager has already checked the product
rules (statuses, sizes, limits) and holds the backend's lock when it calls a method that
changes storage; a driver never sees a status. Volumes and snapshots are Cinder-like
records: ``id``, ``size`` (GiB), and for snapshots ``volume_id`` and ``volume_size``.
``EVSDriver`` implements it over any ``evs_driver.backends`` backend.
"""

import abc
from collections.abc import Callable, Iterator

from evs_driver.backends.base import CheckReport, DeviceUsage, PoolStats
from evs_driver.blockdev import DeviceBase

Progress = Callable[[int, int], None]


class Exporter(abc.ABC):
    """Makes a backend device reachable by a host and forgets it again: the seam between
    a driver and what serves its devices (the service's NBD exporter)."""

    @abc.abstractmethod
    def export(
        self,
        backend,
        device_id: str,
        read_only: bool,
        listen: dict | None = None,
        name: str | None = None,
    ) -> dict:
        """Serve ``device_id`` of ``backend``; return connection data (host, port, export name).

        ``listen`` picks the address (``{"socket": PATH}`` or ``{"host": H, "port": N}``);
        ``name`` is a second export name (the device's own name, unique to it).
        """

    @abc.abstractmethod
    def unexport(self, device_id: str) -> None:
        """Stop serving ``device_id``; a device not served is not an error."""

    def served(self, device_id: str) -> dict | None:
        """Connection info of ``device_id``'s export (with its ``connections`` count), None
        when it is not served."""
        return None

    def exports(self) -> list[dict]:
        """Connection info of every export, with its connection count."""
        return []

    def offer_changes(self, bases: Callable[[str], list[tuple[str, str | None]]]) -> None:
        """Let clients ask where an export differs from one of its snapshots: ``bases(id)``
        lists ``(snapshot id, name)`` of those device ``id`` may be compared with. An
        exporter that cannot tell ignores it."""


class VolumeDriver(abc.ABC):
    """One backend group's volumes and redirect-on-write snapshots."""

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    def do_setup(self, context) -> None:
        """Load and open the backend. Raise ``ConfigError`` for a bad option, and
        ``BackendUnavailable`` when the storage is not there (a pool that is missing or
        damaged, a cluster that does not answer): the manager then reports the backend down
        and serves the others."""

    @abc.abstractmethod
    def validate_config(self) -> None:
        """Raise ``ConfigError`` for options that cannot work (an unknown backend), without
        touching storage: the manager calls it for every enabled backend at start."""

    @abc.abstractmethod
    def create_pool(self) -> None:
        """Create the backend's storage where none is, without setting up (the backend is
        down because its pool is missing): ``evs pool create``. ``AlreadyExists`` when
        there is one."""

    @abc.abstractmethod
    def check_for_setup_error(self) -> None:
        """Raise when the backend cannot serve requests right now."""

    @abc.abstractmethod
    def recover(self) -> None:
        """Finish or undo backend work a crash interrupted. Called once at start, only when
        no other live manager uses the backend."""

    @abc.abstractmethod
    def hold_open(self) -> None:
        """Keep the backend's storage open until ``close`` (one open per command or service
        instead of one per call)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Make everything durable and release the storage; idempotent."""

    # -- volumes ------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_volume(self, volume) -> dict | None:
        """Create an empty thin volume of ``volume.size`` GiB that reads as zeros. Returns
        catalog fields to store (``provider_location``) or None."""

    @abc.abstractmethod
    def delete_volume(self, volume) -> None:
        """Delete the volume; one already gone is not an error. Its snapshots, and volumes
        made from them, must not change."""

    @abc.abstractmethod
    def extend_volume(self, volume, new_size: int) -> None:
        """Grow the volume to ``new_size`` GiB (larger than now); its snapshots keep theirs."""

    @abc.abstractmethod
    def create_volume_from_snapshot(self, volume, snapshot) -> dict | None:
        """Create ``volume`` (``volume.size`` >= the snapshot's) holding the snapshot's data,
        zeros beyond it, sharing blocks (a linked clone): cost independent of the size."""

    @abc.abstractmethod
    def create_cloned_volume(self, volume, src_vref) -> dict | None:
        """Create ``volume`` as a linked clone of ``src_vref``'s current content."""

    @abc.abstractmethod
    def create_full_clone(self, volume, source, progress: Progress | None = None) -> dict | None:
        """Create ``volume`` as a copy of a snapshot or volume that shares no blocks,
        reporting ``progress(done, total)`` in bytes. On failure nothing is left behind."""

    # -- snapshots ------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_snapshot(self, snapshot) -> dict | None:
        """Record the volume's current blocks, copying nothing: cost independent of the size
        and of the data written. Every write acknowledged before the call is in it."""

    @abc.abstractmethod
    def delete_snapshot(self, snapshot) -> None:
        """Delete the snapshot; one already gone is not an error. Volumes created from it or
        reverted to it keep their data; space only it holds is freed."""

    @abc.abstractmethod
    def revert_to_snapshot(self, context, volume, snapshot) -> None:
        """Make ``volume`` read as ``snapshot`` (one of its own). The volume keeps its current
        size (bytes past the snapshot's size read as zeros) and every snapshot, this one
        included, stays unchanged."""

    # -- connections ------------------------------------------------------------------------------
    @abc.abstractmethod
    def initialize_connection(self, volume, connector: dict) -> dict:
        """Make the volume reachable by ``connector``'s host; return Cinder-style connection
        info ``{"driver_volume_type": ..., "data": {...}}``."""

    @abc.abstractmethod
    def terminate_connection(self, volume, connector: dict, **kwargs) -> None:
        """End ``connector``'s access to the volume; other hosts keep theirs."""

    @abc.abstractmethod
    def initialize_connection_snapshot(self, snapshot, connector: dict, **kwargs) -> dict:
        """Read-only connection info for a snapshot; its status does not change."""

    @abc.abstractmethod
    def terminate_connection_snapshot(self, snapshot, connector: dict, **kwargs) -> None:
        """End a snapshot's connection; one not connected is not an error."""

    # -- block attachments (iscsi, nvmeof, local) ------------------------------------------------
    @abc.abstractmethod
    def attach_request(self, connector: dict) -> tuple[str, str] | None:
        """(protocol, initiator name) of the block attach ``connector`` asks for, checked, or
        None when it asks for an NBD export. ``connector`` is os-brick's (``initiator``,
        ``nqn``, ``host``) with an optional ``protocol`` (iscsi, nvmeof, local, ``default``
        for the configured target helper's). Raises ``UnknownProtocol``, ``InvalidInitiator``
        or ``InvalidInput`` before anything changes."""

    @abc.abstractmethod
    def create_export(self, context, volume, connector: dict) -> dict | None:
        """For a block attach: make the volume's block device and its target of the
        connector's protocol, letting no initiator in yet. Returns catalog fields to store
        (``provider_auth``: the volume's CHAP credentials). Repeating it changes nothing."""

    @abc.abstractmethod
    def remove_block_export(self, volume, protocols, release_device: bool) -> None:
        """Remove the volume's targets of ``protocols`` and, with ``release_device``, flush
        and release its block device; what is already gone is fine."""

    @abc.abstractmethod
    def block_exports(self) -> list[dict]:
        """The kernel NBD devices and targets of this host (``protocol``, ``volume``,
        ``target``, ``device``, ``initiators``) for ``evs export list``."""

    @abc.abstractmethod
    def served(self, device_id: str) -> dict | None:
        """The connection info of a volume's or snapshot's live export, None when there is
        none (the manager refuses to delete what is served)."""

    # -- information ------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> dict:
        """Cinder's pool statistics (capacities in GiB), cached until ``refresh``."""

    @abc.abstractmethod
    def pool_stats(self) -> PoolStats:
        """The backend's raw capacity figures in bytes and its device counts."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Which backend kind serves the group and where its storage lives, for operators."""

    @abc.abstractmethod
    def device_usage(self, ref) -> DeviceUsage:
        """Size, mapped and exclusive bytes of a volume or snapshot."""

    @abc.abstractmethod
    def device_exists(self, ref) -> bool:
        """True when the backend holds this volume or snapshot."""

    @abc.abstractmethod
    def open_device(self, ref, writable: bool) -> DeviceBase:
        """A volume's or snapshot's data as a block device (snapshots are read-only)."""

    @abc.abstractmethod
    def collect(self) -> None:
        """Reclaim deleted devices' space before returning."""

    @abc.abstractmethod
    def changed_extents(self, old, new) -> Iterator[tuple[int, int, str]]:
        """Where snapshot (or volume) ``new`` differs from ``old`` (None: from a device of
        zeros): ``(offset, length, kind)`` in offset order, ``kind`` "data" or "zero" (what
        ``new`` holds). Computed from the mapping: the cost follows what changed, not the
        size. ``NotSupportedByBackend`` where the backend has no such mapping."""

    @abc.abstractmethod
    def check(self) -> CheckReport:
        """The backend's own consistency check (its fsck)."""
