"""Space figures: mapped and exclusive bytes of images and snapshots, and pool capacity.

RBD copies on write per object (4 MiB by default), so space is counted in whole objects,
from fast-diff (``diff_iterate`` with ``whole_object``, read from the object maps, no data
scanned). A snapshot's exclusive bytes are the objects it holds that changed both since the
snapshot before it and after it: the object versions that only it refers to, what deleting
it frees. The pool's capacity follows Cinder's RBD driver: with a quota the quota bounds it,
else the pool's stored bytes plus what the cluster can still place in it (``max_avail``).
Ceph's pool statistics reach the monitors a few seconds after the writes.
"""

from evs_driver import exception


def changed_objects(image, size: int, from_snap: str | None, include_parent: bool) -> dict:
    """``{object number: bytes}`` of the objects that differ since ``from_snap`` (exist now)."""
    object_size = image.stat()["obj_size"]
    objects: dict[int, int] = {}

    def record(offset: int, length: int, exists: bool) -> int:
        if exists:
            objects[offset // object_size] = length
        return 0

    if size:
        image.diff_iterate(
            0, size, from_snap, record, include_parent=include_parent, whole_object=True
        )
    return objects


def touched_objects(image, size: int, from_snap: str) -> set[int]:
    """Object numbers written or removed since ``from_snap``."""
    object_size = image.stat()["obj_size"]
    touched: set[int] = set()

    def record(offset: int, length: int, exists: bool) -> int:
        touched.update(range(offset // object_size, -(-(offset + length) // object_size)))
        return 0

    if size:
        image.diff_iterate(0, size, from_snap, record, include_parent=False, whole_object=True)
    return touched


def user_snaps(image, user_namespace: int) -> list[dict]:
    """The image's user snapshots, oldest first (trash-namespace ones left out)."""
    snaps = [s for s in image.list_snaps() if s.get("namespace", user_namespace) == user_namespace]
    return sorted(snaps, key=lambda s: s["id"])


def head_usage(image, user_namespace: int) -> tuple[int, int, int]:
    """(size, mapped, exclusive) of an image's head: exclusive is what changed since its last snapshot."""
    size = image.size()
    mapped = sum(changed_objects(image, size, None, include_parent=True).values())
    snaps = user_snaps(image, user_namespace)
    last = snaps[-1]["name"] if snaps else None
    exclusive = sum(changed_objects(image, size, last, include_parent=False).values())
    return size, mapped, exclusive


def snapshot_usage(image, snap_name: str, user_namespace: int) -> tuple[int, int, int]:
    """(size, mapped, exclusive) of one snapshot of ``image`` (opened at its head)."""
    snaps = user_snaps(image, user_namespace)
    names = [s["name"] for s in snaps]
    if snap_name not in names:
        raise exception.NotFound(kind="Snapshot", name=snap_name)
    at = names.index(snap_name)
    previous = names[at - 1] if at > 0 else None
    following = names[at + 1] if at + 1 < len(names) else None
    size = snaps[at]["size"]
    image.set_snap(snap_name)
    try:
        mapped = sum(changed_objects(image, size, None, include_parent=True).values())
        own = changed_objects(image, size, previous, include_parent=False)
    finally:
        image.set_snap(following)  # None: back to the head
    later = touched_objects(image, min(size, image.size()), snap_name)
    image.set_snap(None)
    # Objects past a later size (none: volumes only grow) would also be the snapshot's alone.
    exclusive = sum(length for number, length in own.items() if number in later)
    return size, mapped, exclusive


def capacity(df: dict, quota: dict, pool: str) -> tuple[int, int]:
    """(total, free) bytes of ``pool`` from the ``df`` and ``osd pool get-quota`` answers."""
    stats = next(p["stats"] for p in df["pools"] if p["name"] == pool)
    stored = stats.get("stored", stats.get("bytes_used", 0))
    max_avail = stats["max_avail"]
    limit = quota.get("quota_max_bytes") or 0
    if limit:
        return limit, max(0, min(limit - stored, max_avail))
    return stored + max_avail, max_avail
