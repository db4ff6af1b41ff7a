"""The contract every storage backend implements.

The driver talks to storage only through this class, so a new backend needs no
driver change. Ids are the catalog's strings (volume and snapshot UUIDs); sizes
are bytes. Backends do not know statuses or product rules: the manager enforces
those before it calls here.
"""

import abc
import dataclasses
from collections.abc import Callable, Iterator

from evs_driver import exception
from evs_driver.blockdev import DeviceBase
from evs_driver.copying import copy_into
from evs_driver.reports import CheckReport  # defined apart so the engine can use it too

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes total) during long copies."""


@dataclasses.dataclass(frozen=True)
class PoolStats:
    """Capacity of a backend's pool, in bytes."""

    total_bytes: int
    free_bytes: int
    provisioned_bytes: int
    volume_count: int
    snapshot_count: int
    metadata_bytes: int = 0
    metadata_free_bytes: int | None = None
    #: Space the pool really takes on its disks (sparse files count what is allocated).
    allocated_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class DeviceUsage:
    """Space of one volume or snapshot, in bytes."""

    size: int
    mapped_bytes: int
    exclusive_bytes: int


class Backend(abc.ABC):
    """One pool of volumes and snapshots."""

    #: ``storage_protocol`` reported in the driver's stats.
    storage_protocol: str = "nbd"
    #: ``driver_volume_type`` of the backend's own attach (e.g. ``rbd``), used unless the
    #: connector asks for ``protocol: nbd``; None: attach through an NBD export.
    native_volume_type: str | None = None
    #: True when the backend implements the manage/unmanage calls below.
    can_manage: bool = False

    def __init__(self, conf, backend_name: str):
        """``conf`` is the backend's oslo.config group (attribute access)."""
        self.conf = conf
        self.backend_name = backend_name

    # -- lifecycle -----------------------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Open (creating when allowed) the pool; raise ``ConfigError`` on bad settings."""

    @abc.abstractmethod
    def check_setup(self) -> None:
        """Raise when the backend cannot serve requests."""

    def close(self) -> None:
        """Flush and release the pool."""

    def recover(self) -> None:
        """Finish or undo backend work a crash interrupted (called at start)."""

    def validate_config(self) -> None:
        """Raise ``ConfigError`` for options that cannot work, touching no storage."""

    def create_pool(self) -> None:
        """Create a new, empty pool where none is (``evs pool create``)."""
        raise exception.InvalidOperation(
            reason=f"backend {self.backend_name} ({type(self).__name__}) does not create its "
            "storage on request; see its options"
        )

    def hold_open(self) -> None:
        """Keep the storage open until ``close`` (a no-op where opening costs nothing)."""

    # -- volumes and snapshots -------------------------------------------------------
    @abc.abstractmethod
    def create_volume(self, volume_id: str, size: int) -> None:
        """Create an empty (zero-filled) thin volume of ``size`` bytes."""

    @abc.abstractmethod
    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume; a missing one is not an error. Its snapshots are unaffected."""

    @abc.abstractmethod
    def extend_volume(self, volume_id: str, new_size: int) -> None:
        """Grow a volume to ``new_size`` bytes; never shrinks."""

    @abc.abstractmethod
    def create_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Record a read-only point-in-time image of a volume, copying no data."""

    @abc.abstractmethod
    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot; a missing one is not an error. Volumes made from it keep their data."""

    @abc.abstractmethod
    def create_volume_from_snapshot(self, snapshot_id: str, volume_id: str, size: int) -> None:
        """Create a volume sharing the snapshot's blocks; bytes past the snapshot read as zeros."""

    @abc.abstractmethod
    def clone_volume(self, source_volume_id: str, volume_id: str, size: int) -> None:
        """Create a volume sharing the source volume's current blocks."""

    @abc.abstractmethod
    def revert_to_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Make the volume's content the snapshot's, keeping every snapshot and the volume's size."""

    def full_copy(
        self,
        source_id: str,
        volume_id: str,
        size: int,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Create a volume holding a copy of ``source_id`` that shares no blocks with it."""
        self.create_volume(volume_id, size)
        try:
            with (
                self.open_device(source_id, writable=False) as src,
                self.open_device(volume_id, writable=True) as dst,
            ):
                copy_into(src, dst, target_is_zero=True, progress=progress)
        except BaseException:
            self.delete_volume(volume_id)
            raise

    # -- information -----------------------------------------------------------------
    @abc.abstractmethod
    def exists(self, device_id: str) -> bool:
        """True when a volume or snapshot with this id exists."""

    @abc.abstractmethod
    def device_usage(self, device_id: str) -> DeviceUsage:
        """Size, mapped and exclusive bytes of a volume or snapshot."""

    @abc.abstractmethod
    def pool_stats(self) -> PoolStats:
        """Capacity figures for the scheduler and ``evs pool show``."""

    @abc.abstractmethod
    def check(self) -> CheckReport:
        """Verify the pool's metadata (the backend's fsck)."""

    def collect(self) -> None:
        """Reclaim the space of deleted devices now instead of in the background."""

    # -- data path -------------------------------------------------------------------
    @abc.abstractmethod
    def open_device(self, device_id: str, writable: bool) -> DeviceBase:
        """A ``BlockDevice`` for a volume (or a read-only one for a snapshot)."""

    def connection_properties(self, device_id: str) -> dict:
        """Backend-specific part of the connection info (e.g. a device path)."""
        return {}

    # -- adopting existing storage (Cinder's manageable-volume contract) ----------------
    def existing_size(self, ref: dict) -> int:
        """Size in bytes of the volume that managing ``ref`` would make."""
        raise self._cannot_manage()

    def manage_existing(self, volume_id: str, ref: dict) -> int:
        """Adopt the device ``ref`` names as volume ``volume_id``; returns its size in bytes."""
        raise self._cannot_manage()

    def existing_snapshot_size(self, volume_id: str, ref: dict) -> int:
        """Size in bytes of the snapshot of volume ``volume_id`` that ``ref`` names."""
        raise self._cannot_manage()

    def manage_existing_snapshot(self, snapshot_id: str, volume_id: str, ref: dict) -> int:
        """Adopt a snapshot of volume ``volume_id`` as ``snapshot_id``; returns its size."""
        raise self._cannot_manage()

    def manageable_volumes(self, managed_ids: set[str]) -> list[dict]:
        """Devices that could be managed: ``reference``, ``size`` (bytes), ``safe_to_manage``,
        ``reason_not_safe``, ``cinder_id`` (when ``managed_ids`` has it), ``extra_info``."""
        return []

    def manageable_snapshots(self, managed_ids: set[str]) -> list[dict]:
        """Snapshots that could be managed, as ``manageable_volumes`` plus
        ``source_reference`` (their volume's reference)."""
        return []

    def unmanage(self, device_id: str) -> None:
        """Stop managing a volume or snapshot, leaving its data where it is."""
        raise self._cannot_manage()

    # -- changed-block diffs and group operations ---------------------------------------
    #: True when ``changed_extents`` works, and devices from ``open_device`` have
    #: ``changes(base_id, offset, length, limit)`` (NBD's ``evs:changed-since:`` context).
    supports_diffs = False

    def changed_extents(self, old_id: str | None, new_id: str) -> Iterator[tuple[int, int, str]]:
        """Where ``new_id`` differs from ``old_id`` (None: from a device of zeros), in
        offset order: ``(offset, length, kind)``, ``kind`` "data" or "zero" (what
        ``new_id`` holds there), computed from the mapping, not by reading the data."""
        raise self.not_supported("changed-block diffs")

    #: True when ``snapshot_all``, ``clone_all`` and ``revert_all`` work at one instant.
    supports_groups = False

    def snapshot_all(self, pairs: list[tuple[str, str]]) -> None:
        """Snapshot each ``(volume_id, snapshot_id)`` at one instant: every write acknowledged
        before the call is in every snapshot, none after it is in any; all or none."""
        raise self.not_supported("consistent group snapshots")

    def clone_all(self, items: list[tuple[str, str, int]]) -> None:
        """Create each ``(source_id, volume_id, size)`` as a linked clone, at one instant."""
        raise self.not_supported("consistent group clones")

    def revert_all(self, pairs: list[tuple[str, str]]) -> None:
        """Revert each ``(volume_id, snapshot_id)`` pair, all or none."""
        raise self.not_supported("group reverts")

    def not_supported(self, what: str) -> exception.NotSupportedByBackend:
        """The error for a feature this backend does not have."""
        kind = getattr(self.conf, "volume_backend", None) or type(self).__name__
        return exception.NotSupportedByBackend(backend=self.backend_name, kind=kind, what=what)

    def require_manage(self) -> None:
        """Refuse, before anything changes, when this backend cannot adopt or release devices."""
        if not self.can_manage:
            raise self._cannot_manage()

    def _cannot_manage(self) -> exception.EVSError:
        return exception.InvalidOperation(
            reason=f"backend {self.backend_name} cannot manage or unmanage existing devices"
        )
