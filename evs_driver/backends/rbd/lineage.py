"""Clone v2 children, their parent chains, and the removal of images nothing uses any more.

A linked clone reads what it has not written from its parent snapshot, and that parent may
be a clone too: each clone-and-swap revert and each clone of a clone adds a level. Past
``rbd_max_clone_depth`` levels the Ceph manager is asked to flatten the new image in the
background (``rbd task add flatten``), so the request itself never copies O(size) data.
"""

import json
import logging

from evs_driver import exception
from evs_driver.backends.rbd import naming
from evs_driver.conf import backend_option_error

LOG = logging.getLogger(__name__)
RELEASES = ("jewel", "kraken", "luminous", "mimic", "nautilus", "octopus", "pacific", "quincy",
            "reef", "squid", "tentacle")  # fmt: skip
_BUSY = ("ImageBusy", "ImageHasSnapshots")


class Lineage:
    """Clones, parent depth and purging for one ``Cluster``."""

    def __init__(self, cluster, conf):
        self.cluster = cluster
        self.conf = conf
        rbd = cluster.rbd
        #: layering + exclusive-lock + object-map + fast-diff + deep-flatten: what clones,
        #: usage figures and flatten need (Ceph's default feature set).
        self.features = (
            rbd.RBD_FEATURE_LAYERING
            | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
            | rbd.RBD_FEATURE_OBJECT_MAP
            | rbd.RBD_FEATURE_FAST_DIFF
            | rbd.RBD_FEATURE_DEEP_FLATTEN
        )

    def require_clone_v2(self) -> None:
        """Refuse a cluster whose clients may be older than mimic: clones would need protection."""
        osdmap = self.cluster.mon("osd dump")
        required = osdmap.get("require_min_compat_client", "jewel")
        if required in RELEASES and RELEASES.index(required) < RELEASES.index("mimic"):
            raise backend_option_error(
                self.conf,
                "rbd_pool",
                f"the cluster's require_min_compat_client is {required}; linked clones need "
                "clone v2 (mimic or later clients) because evs_driver never protects snapshots. "
                "Run: ceph osd set-require-min-compat-client mimic",
            )

    def snap_size(self, image_name: str, snap_name: str) -> int:
        """The size an image had when ``snap_name`` was taken."""
        rbd = self.cluster.rbd
        with (
            self.cluster.errors(f"reading snapshot {snap_name}"),
            rbd.Image(self.cluster.ioctx, image_name, read_only=True) as image,
        ):
            for snap in image.list_snaps():
                if snap["name"] == snap_name:
                    return snap["size"]
        raise exception.NotFound(kind="Snapshot", name=snap_name)

    def clone(self, parent: str, snap: str, child: str, size: int, parent_size: int) -> None:
        """Make ``child`` a clone v2 child of ``parent@snap`` and grow it to ``size``."""
        rbd = self.cluster.rbd
        ioctx = self.cluster.ioctx
        with self.cluster.errors(f"cloning {parent}@{snap} as {child}"):
            try:
                rbd.RBD().clone(ioctx, parent, snap, ioctx, child, features=self.features)
            except rbd.ImageExists:
                raise exception.AlreadyExists(kind="Image", name=child) from None
            if size > parent_size:
                with rbd.Image(ioctx, child) as image:
                    image.resize(size)

    def depth(self, name: str) -> int:
        """How many parent levels ``name`` reads through."""
        rbd = self.cluster.rbd
        levels = 0
        spec = {"pool_name": self.cluster.pool, "pool_namespace": self.cluster.namespace,
                "image_name": name}  # fmt: skip
        while True:
            ioctx = self.cluster.handle.open_ioctx(spec["pool_name"])
            try:
                ioctx.set_namespace(spec["pool_namespace"])
                with rbd.Image(ioctx, spec["image_name"], read_only=True) as image:
                    try:
                        spec = image.get_parent_image_spec()
                    except rbd.ImageNotFound:
                        return levels
            finally:
                ioctx.close()
            levels += 1

    def limit_depth(self, name: str) -> None:
        """Ask the manager to flatten ``name`` when it is deeper than ``rbd_max_clone_depth``."""
        limit = self.conf.rbd_max_clone_depth
        if not limit:
            return
        with self.cluster.errors(f"reading the parents of {name}"):
            levels = self.depth(name)
        if levels <= limit:
            return
        command = json.dumps(
            {"prefix": "rbd task add flatten", "image_spec": self.cluster.spec(name)}
        )
        try:
            with self.cluster.errors(f"scheduling a flatten of {name}"):
                ret, _, err = self.cluster.handle.mgr_command(
                    command, b"", timeout=self.cluster.timeout
                )
        except exception.EVSError as exc:
            ret, err = -1, str(exc)
        if ret < 0:
            LOG.warning(
                "Could not schedule a flatten of %s (%d levels deep): %s", name, levels, err
            )
        else:
            LOG.info("Scheduled a background flatten of %s (%d levels deep)", name, levels)

    def purge(self) -> None:
        """Remove our trashed images and held images without snapshots; busy ones wait.

        Removing a clone frees its parent's trashed snapshot, which may free a held image:
        rounds go on while one frees something (at most one round per parent level).
        """
        while self._purge_round():
            pass

    def _purge_round(self) -> bool:
        rbd = self.cluster.rbd
        ioctx = self.cluster.ioctx
        freed = False
        with self.cluster.errors("listing the trash"):
            trashed = [t for t in rbd.RBD().trash_list(ioctx) if naming.is_ours(t["name"])]
        for entry in trashed:
            with self.cluster.errors(f"removing image {entry['name']} from the trash"):
                try:
                    rbd.RBD().trash_remove(ioctx, entry["id"])
                    freed = True
                except rbd.ImageNotFound:
                    pass
                except tuple(getattr(rbd, n) for n in _BUSY):
                    LOG.debug("%s is still in use; it stays in the trash", entry["name"])
        with self.cluster.errors("listing images"):
            held = [n for n in rbd.RBD().list(ioctx) if n.startswith(naming.HELD_PREFIX)]
        for name in held:
            with self.cluster.errors(f"reading {name}"):
                try:
                    with rbd.Image(ioctx, name, read_only=True) as image:
                        unused = not list(image.list_snaps())
                except rbd.ImageNotFound:
                    continue
                if unused:
                    rbd.RBD().trash_move(ioctx, name, 0)
                    freed = True
        return freed
