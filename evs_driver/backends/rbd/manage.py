"""Adopting existing RBD images and snapshots (Cinder's manageable-volume contract).

A reference names an image of the backend's namespace by ``source-name`` or
``source-id`` (Cinder's keys). Managing renames it ``volume-<new id>`` and grows it to a
whole GiB, so the catalog's size is the image's; its ``snapshot-<id>`` snapshots move to
the new volume in the index, ready for ``manage_existing_snapshot``. Unmanaging changes
nothing in Ceph: the image keeps its name, so the service that takes it over (configured on
the same pool and namespace) finds it with ``source-name: volume-<id>``. An image that is
open (watchers: attached or served) or is one of our helpers is not safe to manage.
"""

from evs_driver import exception
from evs_driver.backends.rbd import naming
from evs_driver.backends.rbd.naming import SnapshotRef

GiB = 1024**3


def _ref_text(ref: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((ref or {}).items())) or "an empty reference"


def _resolve(backend, ref: dict) -> str:
    """The image name a reference names; ``InvalidReference`` when it names none of ours."""
    ref = ref or {}
    if "source-name" in ref:
        image = backend.images.open(ref["source-name"], read_only=True)
    elif "source-id" in ref:
        image = backend.images.open(image_id=ref["source-id"], read_only=True)
    else:
        raise exception.InvalidReference(
            ref=_ref_text(ref), reason="give source-name (an image name) or source-id"
        )
    if image is None:
        raise exception.InvalidReference(
            ref=_ref_text(ref),
            reason=f"no such image in {backend.cluster.spec('').rstrip('/')}",
        )
    with image, backend.cluster.errors("reading the image to manage"):
        name = image.get_name()
        reason = _unsafe(image, name)
    if reason:
        raise exception.InvalidReference(ref=_ref_text(ref), reason=reason)
    return name


def _unsafe(image, name: str) -> str | None:
    """Why an image must not be managed now, or None."""
    if name.startswith((naming.HELD_PREFIX, naming.REVERT_PREFIX)):
        return f"{name} is an evs_driver helper image, not a volume"
    watchers = list(image.watchers_list())
    if watchers:
        return f"{name} is open by {len(watchers)} client(s) (attached?); detach it first"
    return None


def existing_size(backend, ref: dict) -> int:
    """The size, in bytes, that the volume managed from ``ref`` will have (whole GiB)."""
    name = _resolve(backend, ref)
    with (
        backend.images.image(name, "Image", name, read_only=True) as image,
        backend.cluster.errors(f"reading {name}"),
    ):
        return -(-image.size() // GiB) * GiB


def manage_existing(backend, volume_id: str, ref: dict) -> int:
    """Rename the image to ``volume-<volume_id>``, grow it to whole GiB; returns its size."""
    name = _resolve(backend, ref)
    target = naming.volume(volume_id)
    if name != target:
        if backend.images.open(target, read_only=True) is not None:
            raise exception.AlreadyExists(kind="Volume", name=volume_id)
        backend.images.rename(name, target)
    with (
        backend.images.image(target, "Volume", volume_id) as image,
        backend.cluster.errors(f"adopting {name}"),
    ):
        size = image.size()
        whole = -(-size // GiB) * GiB
        if whole > size:
            image.resize(whole)
        image_id = image.id()
        snaps = [s["name"] for s in image.list_snaps()]
    # The volume's snapshots move with it: those on this image, and those the index knows
    # under its old id (on images a revert or a delete retired).
    old_id = naming.volume_id_of(name)
    moved = [r for r in backend.index.all().values() if old_id and r.volume_id == old_id]
    for snap in snaps:
        if snap.startswith(naming.SNAPSHOT_PREFIX):
            moved.append(SnapshotRef(snap[len(naming.SNAPSHOT_PREFIX) :], image_id, volume_id))
    for ref in moved:
        backend.index.put(SnapshotRef(ref.snapshot_id, ref.image_id, volume_id))
    return whole


def existing_snapshot(backend, volume_id: str, ref: dict) -> tuple[str, SnapshotRef, int]:
    """(snapshot name, its image's entry, size) of a snapshot of volume ``volume_id``."""
    snap = (ref or {}).get("source-name")
    if not snap:
        raise exception.InvalidReference(
            ref=_ref_text(ref), reason="give source-name, the RBD snapshot's name"
        )
    indexed = None
    if snap.startswith(naming.SNAPSHOT_PREFIX):
        indexed = backend.index.get(snap[len(naming.SNAPSHOT_PREFIX) :])
    if indexed is not None and indexed.volume_id == volume_id:
        image = backend.images.open(image_id=indexed.image_id, read_only=True)
    else:
        image = backend.images.open(naming.volume(volume_id), read_only=True)
    if image is None:
        raise exception.NotFound(kind="Volume", name=volume_id)
    with image, backend.cluster.errors(f"reading snapshots of volume {volume_id}"):
        sizes = {s["name"]: s["size"] for s in image.list_snaps()}
        image_id = image.id()
    if snap not in sizes:
        raise exception.InvalidReference(
            ref=_ref_text(ref), reason=f"volume {volume_id} has no snapshot {snap}"
        )
    return snap, SnapshotRef("", image_id, volume_id), sizes[snap]


def manage_existing_snapshot(backend, snapshot_id: str, volume_id: str, ref: dict) -> int:
    """Rename the snapshot ``snapshot-<snapshot_id>`` and index it; returns its size."""
    snap, where, size = existing_snapshot(backend, volume_id, ref)
    new = SnapshotRef(snapshot_id, where.image_id, volume_id)
    backend.index.put(new)
    if snap != new.snap_name:
        with (
            backend.images.image(None, "Volume", volume_id, image_id=where.image_id) as image,
            backend.cluster.errors(f"renaming snapshot {snap}"),
        ):
            image.rename_snap(snap, new.snap_name)
        if snap.startswith(naming.SNAPSHOT_PREFIX):
            backend.index.drop(snap[len(naming.SNAPSHOT_PREFIX) :])
    return size


def manageable_volumes(backend, managed_ids: set[str]) -> list[dict]:
    """Every image of the namespace, with whether it is safe to manage and why not."""
    entries = []
    for name in sorted(backend.images.names()):
        if name.startswith((naming.HELD_PREFIX, naming.REVERT_PREFIX)):
            continue
        image = backend.images.open(name, read_only=True)
        if image is None:
            continue
        with image, backend.cluster.errors(f"reading {name}"):
            size = image.size()
            reason = _unsafe(image, name)
            snapshots = sum(1 for s in image.list_snaps() if s.get("namespace", 0) == 0)
        volume_id = naming.volume_id_of(name)
        managed = volume_id in managed_ids
        if managed:
            reason = "already managed"
        entries.append(
            {
                "reference": {"source-name": name},
                "size": size,
                "safe_to_manage": reason is None,
                "reason_not_safe": reason,
                "cinder_id": volume_id if managed else None,
                "extra_info": {"snapshots": snapshots},
            }
        )
    return entries


def manageable_snapshots(backend, managed_ids: set[str]) -> list[dict]:
    """The user snapshots of the namespace's volume images, with whether each is managed."""
    entries = []
    user = backend.cluster.rbd.RBD_SNAP_NAMESPACE_TYPE_USER
    for name in sorted(backend.images.names()):
        if naming.volume_id_of(name) is None:
            continue
        image = backend.images.open(name, read_only=True)
        if image is None:
            continue
        with image, backend.cluster.errors(f"reading snapshots of {name}"):
            snaps = [s for s in image.list_snaps() if s.get("namespace", user) == user]
        for snap in snaps:
            snapshot_id = snap["name"][len(naming.SNAPSHOT_PREFIX) :]
            managed = snap["name"].startswith(naming.SNAPSHOT_PREFIX) and snapshot_id in managed_ids
            entries.append(
                {
                    "reference": {"source-name": snap["name"]},
                    "size": snap["size"],
                    "safe_to_manage": not managed,
                    "reason_not_safe": "already managed" if managed else None,
                    "cinder_id": snapshot_id if managed else None,
                    "extra_info": None,
                    "source_reference": {"source-name": name},
                }
            )
    return entries
