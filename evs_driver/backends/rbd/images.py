"""Images of one namespace: open, rename, retire, trash, and find snapshots by id.

``undo_on_error`` keeps an undo step that failed (the cluster was unreachable) in
``pending``; ``retry_pending`` runs them again before the next operation, so no half-made
image or snapshot survives once the cluster answers again.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator

from evs_driver import exception
from evs_driver.backends.rbd import naming
from evs_driver.backends.rbd.naming import SnapshotRef

LOG = logging.getLogger(__name__)


class ImageStore:
    """librbd image operations on the cluster's I/O context, errors translated."""

    def __init__(self, cluster, index: naming.SnapshotIndex, backend_name: str):
        self.cluster = cluster
        self.index = index
        self.backend_name = backend_name
        self.pending: list[tuple[str, Callable[[], None]]] = []

    @property
    def _rbd(self):
        return self.cluster.rbd.RBD()

    def names(self) -> list[str]:
        with self.cluster.errors("listing images"):
            return list(self._rbd.list(self.cluster.ioctx))

    def open(self, name: str | None = None, image_id: str | None = None, **kwargs):
        """An open ``rbd.Image``, or None when there is no such image."""
        with self.cluster.errors(f"opening image {name or image_id}"):
            try:
                return self.cluster.rbd.Image(
                    self.cluster.ioctx, name=name, image_id=image_id, **kwargs
                )
            except self.cluster.rbd.ImageNotFound:
                return None

    @contextlib.contextmanager
    def image(self, name: str, kind: str, device_id: str, **kwargs) -> Iterator:
        image = self.open(name, **kwargs)
        if image is None:
            raise exception.NotFound(kind=kind, name=device_id)
        with image:
            yield image

    def remove_now(self, name: str) -> None:
        """Remove an image (one already gone is fine): for the undo of a failed step."""
        rbd = self.cluster.rbd
        with self.cluster.errors(f"removing image {name}"):
            try:
                self._rbd.remove(self.cluster.ioctx, name)
            except rbd.ImageNotFound:
                pass
            except rbd.ImageBusy:
                if not self._release_own_stale_lock(name):
                    raise
                self._rbd.remove(self.cluster.ioctx, name)

    def _release_own_stale_lock(self, name: str) -> bool:
        """Release an exclusive lock this client still holds on an image no one has open.

        An image closed while the OSD was down keeps our client's lock (the release could not
        be sent), and librbd will not break its own client's lock, so removal stays EBUSY.
        With no watchers no handle uses it; the lock is ours, so we unlock it as its owner
        (breaking it would blocklist this very client).
        """
        ours = set(self.cluster.handle.get_addrs().split(","))
        image = self.open(name, read_only=True)  # read-only: it adds no watch of its own
        if image is None:
            return False
        with image:
            if list(image.watchers_list()):
                return False
            header = "rbd_header." + image.id()
            lockers = image.list_lockers()  # [] when unlocked, else a dict
            held = lockers.get("lockers", []) if isinstance(lockers, dict) else []
            stale = [lk for lk in held if lk[2] in ours]
        for _client, cookie, _addr in stale:
            self.cluster.ioctx.unlock(header, "rbd_lock", cookie)
            LOG.info("Released this client's stale lock on %s (%s)", name, cookie)
        return bool(stale)

    def trash(self, name: str) -> None:
        """Move an image to the trash (constant time); ``collect`` removes it."""
        with self.cluster.errors(f"moving image {name} to the trash"):
            try:
                self._rbd.trash_move(self.cluster.ioctx, name, 0)
            except self.cluster.rbd.ImageNotFound:
                pass

    def rename(self, old: str, new: str) -> None:
        with self.cluster.errors(f"renaming image {old} to {new}"):
            self._rbd.rename(self.cluster.ioctx, old, new)

    def retire(self, image, name: str) -> None:
        """Take ``name`` off a volume's image: held if snapshots still use it, else trashed."""
        if list(image.list_snaps()):
            self.rename(name, naming.held(image.id()))
        else:
            self.trash(name)

    @contextlib.contextmanager
    def undo_on_error(self, what: str, undo: Callable[[], None]) -> Iterator[None]:
        """Run ``undo`` when the block fails; if that fails too, keep it for a retry."""
        try:
            yield
        except exception.AlreadyExists:
            raise
        except BaseException as exc:
            try:
                undo()
            except exception.EVSError as undo_exc:
                self.pending.append((what, undo))
                exc.add_note(f"undoing it failed too ({undo_exc}); it is retried later")
            raise

    def retry_pending(self) -> None:
        """Retry the undo steps that failed while the cluster was unreachable."""
        pending, self.pending = self.pending, []
        for what, undo in pending:
            try:
                undo()
                LOG.info("Backend %s: undid %s", self.backend_name, what)
            except exception.EVSError:
                self.pending.append((what, undo))

    def snapshot(self, snapshot_id: str) -> tuple[SnapshotRef, str] | None:
        """The snapshot's index entry and its image's current name, if the snapshot exists."""
        ref = self.index.get(snapshot_id)
        if ref is None:
            return None
        image = self.open(image_id=ref.image_id, read_only=True)
        if image is None:
            return None
        with image, self.cluster.errors(f"reading snapshots of {ref.image_id}"):
            if not image.snap_exists(ref.snap_name):
                return None
            return ref, image.get_name()

    def require_snapshot(self, snapshot_id: str) -> tuple[SnapshotRef, str]:
        found = self.snapshot(snapshot_id)
        if found is None:
            raise exception.NotFound(kind="Snapshot", name=snapshot_id)
        return found
