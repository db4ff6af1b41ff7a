"""``check`` for the rbd backend: the snapshot index against the images, and leftovers.

Problems it reports: an index entry whose image or snapshot is gone (a crash between
the two writes of a snapshot create or delete), a ``snapshot-<id>`` on one of our images
with no entry (its id cannot be found), an interrupted revert, and an invalid object map
(usage figures would be wrong; ``rbd object-map rebuild`` fixes it).
"""

from evs_driver.backends import base
from evs_driver.backends.rbd import naming


def check(backend) -> base.CheckReport:
    """What is inconsistent in the backend's namespace."""
    cluster = backend.cluster
    rbd = cluster.rbd
    problems: list[str] = []
    entries = backend.index.all()
    indexed: dict[str, set[str]] = {}
    for ref in entries.values():
        indexed.setdefault(ref.image_id, set()).add(ref.snap_name)
    seen: dict[str, set[str]] = {}
    names = [n for n in backend.images.names() if naming.is_ours(n)]
    held = 0
    for name in names:
        if name.startswith(naming.REVERT_PREFIX):
            problems.append(f"interrupted revert left {name}; recover() settles it")
            continue
        held += name.startswith(naming.HELD_PREFIX)
        image = backend.images.open(name, read_only=True)
        if image is None:
            continue
        with image, cluster.errors(f"checking {name}"):
            image_id = image.id()
            snaps = {s["name"] for s in image.list_snaps()}
            if image.flags() & (rbd.RBD_FLAG_OBJECT_MAP_INVALID | rbd.RBD_FLAG_FAST_DIFF_INVALID):
                problems.append(
                    f"{name} has an invalid object map; run: rbd object-map rebuild "
                    f"{cluster.spec(name)}"
                )
        seen[image_id] = snaps
        for snap in sorted(snaps - indexed.get(image_id, set())):
            if snap.startswith(naming.SNAPSHOT_PREFIX):
                problems.append(f"snapshot {name}@{snap} is not in the snapshot index")
    for snapshot_id, ref in sorted(entries.items()):
        if ref.snap_name not in seen.get(ref.image_id, set()):
            problems.append(
                f"snapshot index entry {snapshot_id} names a missing snapshot (image "
                f"{ref.image_id}); deleting the snapshot clears it"
            )
    volumes = sum(1 for n in names if naming.volume_id_of(n))
    summary = (
        f"{cluster.spec('').rstrip('/')}: {volumes} volumes, {len(entries)} snapshots, "
        f"{held} held images"
    )
    return base.CheckReport(tuple(problems), summary)
