"""``RbdBackend``: the Backend contract on librbd, one pool and namespace of a Ceph cluster.

RBD already redirects on write per object: a snapshot is an RBD snapshot (constant time),
a volume from a snapshot is a clone v2 child (no protection), and a clone of a volume is a
child of a helper snapshot removed at once (it waits in librbd's trash namespace while the
child needs it). Revert swaps in a clone of the snapshot (``revert``). Deletes move images to the trash in constant time; ``collect`` purges what nothing uses.
Undo steps that fail while the cluster is unreachable are retried before the next
operation (``ImageStore.pending``), so no half-made image survives the outage.
"""

import logging
from collections.abc import Callable

from evs_driver import exception
from evs_driver.backends import base
from evs_driver.backends.rbd import manage, naming, revert, usage
from evs_driver.backends.rbd.checker import check
from evs_driver.backends.rbd.cluster import Cluster
from evs_driver.backends.rbd.connection import rbd_connection
from evs_driver.backends.rbd.device import RbdDevice
from evs_driver.backends.rbd.images import ImageStore
from evs_driver.backends.rbd.lineage import Lineage
from evs_driver.backends.rbd.naming import SnapshotRef
from evs_driver.copying import copy_into

LOG = logging.getLogger(__name__)


class RbdBackend(base.Backend):
    """Volumes as ``volume-<id>`` RBD images in ``rbd_pool`` (and ``rbd_namespace``)."""

    storage_protocol = "ceph"
    native_volume_type = "rbd"
    can_manage = True

    def __init__(self, conf, backend_name: str):
        super().__init__(conf, backend_name)
        self.cluster: Cluster | None = None
        self.index: naming.SnapshotIndex | None = None
        self.images: ImageStore | None = None
        self.lineage: Lineage | None = None
        self.path: str | None = None

    # -- lifecycle ------------------------------------------------------------------
    def setup(self) -> None:
        """Connect, check the cluster makes clone v2 children, and enter the namespace."""
        cluster = Cluster(self.conf, self.backend_name)
        cluster.connect()
        self.cluster = cluster
        self.lineage = Lineage(cluster, self.conf)
        self.lineage.require_clone_v2()
        cluster.use_namespace()
        self.index = naming.SnapshotIndex(cluster)
        self.images = ImageStore(cluster, self.index, self.backend_name)
        self.path = f"rbd:{cluster.spec('').rstrip('/')}"  # where the pool lives, for operators

    def check_setup(self) -> None:
        """Raise when setup did not run or the cluster does not answer."""
        if self.cluster is None or self.cluster.ioctx is None:
            raise exception.BackendError(backend=self.backend_name, reason="setup() did not run")
        self.index.get("-")  # one OSD round trip: BackendTimeout when the cluster is down
        self.images.retry_pending()

    def close(self) -> None:
        """Disconnect from the cluster."""
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def recover(self) -> None:
        """Settle every revert a crash interrupted."""
        for name in self.images.names():
            if name.startswith(naming.REVERT_PREFIX):
                self.settle_revert(name[len(naming.REVERT_PREFIX) :])

    # -- volumes and snapshots -------------------------------------------------------
    def create_volume(self, volume_id: str, size: int) -> None:
        """Create an image of ``size`` bytes with fast-diff (thin: no object is written)."""
        _check_size(size)
        self.images.retry_pending()
        name = naming.volume(volume_id)
        rbd = self.cluster.rbd
        with (
            self.images.undo_on_error(f"creating {name}", lambda: self.images.remove_now(name)),
            self.cluster.errors(f"creating image {name}"),
        ):
            try:
                self.cluster.rbd.RBD().create(
                    self.cluster.ioctx, name, size, old_format=False, features=self.lineage.features
                )
            except rbd.ImageExists:
                raise exception.AlreadyExists(kind="Volume", name=volume_id) from None

    def delete_volume(self, volume_id: str) -> None:
        """Take the volume's name off its image; the snapshots on it stay readable."""
        self.images.retry_pending()
        self.settle_revert(volume_id)
        name = naming.volume(volume_id)
        image = self.images.open(name, read_only=True)
        if image is None:
            return
        with image, self.cluster.errors(f"deleting {name}"):
            self.images.retire(image, name)

    def extend_volume(self, volume_id: str, new_size: int) -> None:
        """Grow the volume's image to ``new_size`` bytes."""
        _check_size(new_size)
        with (
            self.images.image(naming.volume(volume_id), "Volume", volume_id) as image,
            self.cluster.errors(f"extending volume {volume_id}"),
        ):
            size = image.size()
            if new_size < size:
                raise exception.InvalidSize(
                    reason=f"volume {volume_id} is {size} bytes; it cannot shrink to {new_size}"
                )
            if new_size > size:
                image.resize(new_size)

    def create_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """An RBD snapshot ``snapshot-<id>`` of the volume's image, indexed first."""
        self.images.retry_pending()
        ref_name = naming.snapshot(snapshot_id)
        with self.images.image(naming.volume(volume_id), "Volume", volume_id) as image:
            with self.cluster.errors(f"reading volume {volume_id}"):
                ref = SnapshotRef(snapshot_id, image.id(), volume_id)
                if image.snap_exists(ref_name):
                    raise exception.AlreadyExists(kind="Snapshot", name=snapshot_id)
            self.index.put(ref)
            with (
                self.images.undo_on_error(f"snapshot {snapshot_id}", lambda: self._drop_snap(ref)),
                self.cluster.errors(f"creating snapshot {snapshot_id}"),
            ):
                image.create_snap(ref_name)

    def _drop_snap(self, ref: SnapshotRef) -> None:
        """Remove a snapshot (if present) and then its index entry."""
        image = self.images.open(image_id=ref.image_id)
        if image is not None:
            with image, self.cluster.errors(f"removing snapshot {ref.snapshot_id}"):
                if image.snap_exists(ref.snap_name):
                    image.remove_snap(ref.snap_name)  # with children: to the trash namespace
                name = image.get_name()
                if name.startswith(naming.HELD_PREFIX) and not list(image.list_snaps()):
                    self.images.trash(name)
        self.index.drop(ref.snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove the snapshot; clone v2 keeps it in the trash namespace while children use it."""
        self.images.retry_pending()
        ref = self.index.get(snapshot_id)
        if ref is not None:
            self._drop_snap(ref)

    def create_volume_from_snapshot(self, snapshot_id: str, volume_id: str, size: int) -> None:
        """A clone v2 child of the snapshot, grown to ``size``."""
        _check_size(size)
        self.images.retry_pending()
        ref, parent = self.images.require_snapshot(snapshot_id)
        snap_size = self.lineage.snap_size(parent, ref.snap_name)
        if size < snap_size:
            raise exception.InvalidSize(
                reason=f"{size} bytes is smaller than snapshot {snapshot_id} ({snap_size} bytes)"
            )
        name = naming.volume(volume_id)
        with self.images.undo_on_error(f"creating {name}", lambda: self.images.remove_now(name)):
            self.lineage.clone(parent, ref.snap_name, name, size, snap_size)
        self.lineage.limit_depth(name)

    def clone_volume(self, source_volume_id: str, volume_id: str, size: int) -> None:
        """A clone v2 child of a helper snapshot of the source, removed right after."""
        _check_size(size)
        self.images.retry_pending()
        source = naming.volume(source_volume_id)
        helper = naming.clone_snap(volume_id)
        name = naming.volume(volume_id)
        with self.images.image(source, "Volume", source_volume_id) as image:
            with self.cluster.errors(f"snapshotting volume {source_volume_id}"):
                source_size = image.size()
                if size < source_size:
                    raise exception.InvalidSize(
                        reason=f"{size} bytes is smaller than the source volume "
                        f"{source_volume_id} ({source_size} bytes)"
                    )
                image.create_snap(helper)
            try:
                with self.images.undo_on_error(
                    f"creating {name}", lambda: self.images.remove_now(name)
                ):
                    self.lineage.clone(source, helper, name, size, source_size)
            finally:
                undo = self._helper_remover(source_volume_id, helper)
                with self.images.undo_on_error(f"helper snapshot {helper}", undo):
                    undo()
        self.lineage.limit_depth(name)

    def _helper_remover(self, volume_id: str, snap: str) -> Callable[[], None]:
        def remove() -> None:
            image = self.images.open(naming.volume(volume_id))
            if image is not None:
                with image, self.cluster.errors(f"removing snapshot {snap}"):
                    if image.snap_exists(snap):
                        image.remove_snap(snap)

        return remove

    def full_copy(self, source_id, volume_id, size, progress=None) -> None:
        """A copy sharing nothing; a copy that fails (even with the cluster down) goes."""
        self.create_volume(volume_id, size)
        name = naming.volume(volume_id)
        with (
            self.images.undo_on_error(f"copying into {name}", lambda: self.images.remove_now(name)),
            self.open_device(source_id, writable=False) as src,
            self.open_device(volume_id, writable=True) as dst,
        ):
            copy_into(src, dst, target_is_zero=True, progress=progress)

    def revert_to_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Make the volume read as the snapshot, keeping its size and every snapshot."""
        self.images.retry_pending()
        revert.revert(self, volume_id, snapshot_id)

    def settle_revert(self, volume_id: str) -> None:
        """Finish or undo a revert of ``volume_id`` that a crash interrupted."""
        revert.settle(self.images, volume_id)

    # -- information -----------------------------------------------------------------
    def exists(self, device_id: str) -> bool:
        """True when the volume's image or the snapshot exists."""
        image = self.images.open(naming.volume(device_id), read_only=True)
        if image is not None:
            image.close()
            return True
        return self.images.snapshot(device_id) is not None

    def device_usage(self, device_id: str) -> base.DeviceUsage:
        """Size, mapped and exclusive bytes, from fast-diff."""
        user = self.cluster.rbd.RBD_SNAP_NAMESPACE_TYPE_USER
        image = self.images.open(naming.volume(device_id), read_only=True)
        if image is not None:
            with image, self.cluster.errors(f"measuring volume {device_id}"):
                size, mapped, exclusive = usage.head_usage(image, user)
        else:
            ref, _ = self.images.require_snapshot(device_id)
            with (
                self.images.image(
                    None, "Snapshot", device_id, image_id=ref.image_id, read_only=True
                ) as image,
                self.cluster.errors(f"measuring snapshot {device_id}"),
            ):
                size, mapped, exclusive = usage.snapshot_usage(image, ref.snap_name, user)
        return base.DeviceUsage(size=size, mapped_bytes=mapped, exclusive_bytes=exclusive)

    def pool_stats(self) -> base.PoolStats:
        """Pool capacity (quota or what the cluster can still place) and this namespace's counts."""
        volumes = [n for n in self.images.names() if naming.volume_id_of(n)]
        provisioned = 0
        for name in volumes:
            image = self.images.open(name, read_only=True)
            if image is not None:
                with image, self.cluster.errors(f"reading the size of {name}"):
                    provisioned += image.size()
        df = self.cluster.mon("df")
        quota = self.cluster.mon("osd pool get-quota", pool=self.cluster.pool)
        total, free = usage.capacity(df, quota, self.cluster.pool)
        return base.PoolStats(
            total_bytes=total,
            free_bytes=free,
            provisioned_bytes=provisioned,
            volume_count=len(volumes),
            snapshot_count=len(self.index.all()),
        )

    def check(self) -> base.CheckReport:
        """Index entries without snapshots, our snapshots without entries, interrupted reverts."""
        return check(self)

    def collect(self) -> None:
        """Remove trashed and held images that nothing uses any more."""
        self.images.retry_pending()
        self.lineage.purge()

    # -- adopting existing images ----------------------------------------------------
    def existing_size(self, ref: dict) -> int:
        """Size of the volume managing ``ref`` makes (the image's, rounded up to a GiB)."""
        return manage.existing_size(self, ref)

    def manage_existing(self, volume_id: str, ref: dict) -> int:
        """Rename the image ``ref`` names to ``volume-<volume_id>``; returns its size."""
        self.images.retry_pending()
        return manage.manage_existing(self, volume_id, ref)

    def existing_snapshot_size(self, volume_id: str, ref: dict) -> int:
        """Size of the snapshot of ``volume_id`` that ``ref`` names."""
        return manage.existing_snapshot(self, volume_id, ref)[2]

    def manage_existing_snapshot(self, snapshot_id: str, volume_id: str, ref: dict) -> int:
        """Rename the snapshot ``ref`` names to ``snapshot-<snapshot_id>`` and index it."""
        return manage.manage_existing_snapshot(self, snapshot_id, volume_id, ref)

    def manageable_volumes(self, managed_ids: set[str]) -> list[dict]:
        """The namespace's images, with whether each is safe to manage."""
        return manage.manageable_volumes(self, managed_ids)

    def manageable_snapshots(self, managed_ids: set[str]) -> list[dict]:
        """The user snapshots on this namespace's volume images."""
        return manage.manageable_snapshots(self, managed_ids)

    def unmanage(self, device_id: str) -> None:
        """Nothing changes in Ceph: the image (or snapshot) keeps its name for a takeover."""

    # -- data path -------------------------------------------------------------------
    def open_device(self, device_id: str, writable: bool) -> RbdDevice:
        """The volume's image, or a snapshot read-only."""
        name = naming.volume(device_id)
        image = self.images.open(name, read_only=not writable)
        if image is not None:
            return RbdDevice(image, name, not writable, self.cluster.errors)
        ref, _ = self.images.require_snapshot(device_id)
        if writable:
            raise exception.ReadOnlyDevice(name=device_id)
        image = self.images.open(image_id=ref.image_id, snapshot=ref.snap_name, read_only=True)
        if image is None:
            raise exception.NotFound(kind="Snapshot", name=device_id)
        return RbdDevice(image, ref.snap_name, True, self.cluster.errors)

    def connection_properties(self, device_id: str) -> dict:
        """Cinder RBD driver's connection data: os-brick's RBD connector and Nova read it."""
        return rbd_connection(self, device_id)


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise exception.InvalidSize(reason=f"size must be a positive number of bytes, not {size!r}")
