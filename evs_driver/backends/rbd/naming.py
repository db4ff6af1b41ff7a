"""Image and snapshot names in the backend's namespace, and the snapshot index.

Names follow Cinder's RBD driver (``volume-<id>`` images, ``snapshot-<id>`` snapshots), so
images Cinder made can be managed and the ``rbd`` CLI shows what an operator expects. Our
own helpers start with ``evs-``:

- ``evs-held-<image id>``: a former volume image kept because snapshots (or clone v2
  children of its trashed snapshots) still use it, after a clone-and-swap revert or when a
  volume is deleted before its snapshots. It goes once nothing uses it (``collect``).
- ``evs-revert-<volume id>``: a revert's new image until it takes the volume's name; its
  presence is the revert's intent record.
- snapshot ``evs-clone-<volume id>``: the point a linked clone of a volume hangs from; removed
  right after the clone, it lives on in librbd's trash namespace while the clone needs it.

The index (omap of one RADOS object in the namespace) maps a snapshot id to the image that
holds it, by image id, which survives renames: the Backend contract names snapshots by id
alone, and a snapshot may live on a held image. An entry is written before its snapshot and
dropped after it, so a crash leaves at most an entry whose snapshot is missing, which reads
as "no such snapshot" and ``check`` reports.
"""

import dataclasses
import json

VOLUME_PREFIX = "volume-"
SNAPSHOT_PREFIX = "snapshot-"
HELD_PREFIX = "evs-held-"
REVERT_PREFIX = "evs-revert-"
CLONE_SNAP_PREFIX = "evs-clone-"
INDEX_OBJECT = "evs_driver.snapshot_index"
_PAGE = 1000


def volume(volume_id: str) -> str:
    """The image name of a volume."""
    return VOLUME_PREFIX + volume_id


def snapshot(snapshot_id: str) -> str:
    """The RBD snapshot name of a snapshot."""
    return SNAPSHOT_PREFIX + snapshot_id


def held(image_id: str) -> str:
    """The name a former volume image keeps while its snapshots are in use."""
    return HELD_PREFIX + image_id


def revert_temp(volume_id: str) -> str:
    """The name of a revert's new image until it replaces the volume."""
    return REVERT_PREFIX + volume_id


def clone_snap(volume_id: str) -> str:
    """The snapshot of a source volume that the linked clone ``volume_id`` is made from."""
    return CLONE_SNAP_PREFIX + volume_id


def volume_id_of(image_name: str) -> str | None:
    """The volume id in a ``volume-<id>`` image name, else None."""
    if image_name.startswith(VOLUME_PREFIX):
        return image_name[len(VOLUME_PREFIX) :]
    return None


def is_ours(image_name: str) -> bool:
    """True for names this backend makes (volumes and its helpers)."""
    return image_name.startswith((VOLUME_PREFIX, HELD_PREFIX, REVERT_PREFIX))


@dataclasses.dataclass(frozen=True)
class SnapshotRef:
    """Where one snapshot lives: its image (by id) and the volume it was taken of."""

    snapshot_id: str
    image_id: str
    volume_id: str

    @property
    def snap_name(self) -> str:
        return snapshot(self.snapshot_id)


class SnapshotIndex:
    """Snapshot id → ``SnapshotRef``, in the omap of ``INDEX_OBJECT``."""

    def __init__(self, cluster):
        self.cluster = cluster

    def get(self, snapshot_id: str) -> SnapshotRef | None:
        """The snapshot's entry, or None."""
        rados = self.cluster.rados
        with self.cluster.errors("reading the snapshot index"), rados.ReadOpCtx() as op:
            values, _ = self.cluster.ioctx.get_omap_vals_by_keys(op, (snapshot_id,))
            try:
                self.cluster.ioctx.operate_read_op(op, INDEX_OBJECT)
            except rados.ObjectNotFound:
                return None
            found = dict(values)
        raw = found.get(snapshot_id)
        return _parse(snapshot_id, raw) if raw is not None else None

    def put(self, ref: SnapshotRef) -> None:
        """Record (or move) a snapshot's entry."""
        value = json.dumps({"image": ref.image_id, "volume": ref.volume_id}).encode()
        self._write(
            f"indexing snapshot {ref.snapshot_id}", keys=(ref.snapshot_id,), values=(value,)
        )

    def drop(self, snapshot_id: str) -> None:
        """Forget a snapshot's entry (one that is missing is fine)."""
        self._write(f"unindexing snapshot {snapshot_id}", remove=(snapshot_id,))

    def _write(self, action: str, keys=(), values=(), remove=()) -> None:
        rados = self.cluster.rados
        with self.cluster.errors(action), rados.WriteOpCtx() as op:
            if keys:
                self.cluster.ioctx.set_omap(op, keys, values)
            if remove:
                self.cluster.ioctx.remove_omap_keys(op, remove)
            try:
                self.cluster.ioctx.operate_write_op(op, INDEX_OBJECT)
            except rados.ObjectNotFound:
                pass  # removing from an index never written

    def all(self) -> dict[str, SnapshotRef]:
        """Every entry."""
        rados = self.cluster.rados
        entries: dict[str, SnapshotRef] = {}
        after = ""
        while True:
            with self.cluster.errors("reading the snapshot index"), rados.ReadOpCtx() as op:
                values, _ = self.cluster.ioctx.get_omap_vals(op, after, "", _PAGE)
                try:
                    self.cluster.ioctx.operate_read_op(op, INDEX_OBJECT)
                except rados.ObjectNotFound:
                    return entries
                page = list(values)
            for key, raw in page:
                entries[key] = _parse(key, raw)
            if len(page) < _PAGE:
                return entries
            after = page[-1][0]


def _parse(snapshot_id: str, raw: bytes) -> SnapshotRef:
    value = json.loads(raw)
    return SnapshotRef(snapshot_id, value["image"], value["volume"])
