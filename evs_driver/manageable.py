"""Cinder's manageable-volume and -snapshot driver calls, over any backend that supports them.

``EVSDriver`` mixes this in; the backend does the work (``Backend.manage_existing`` and
friends) and a backend that cannot adopt devices refuses with a clear error. Sizes here are
GiB, rounded up, as Cinder expects; listings are sorted and paged the way Cinder's API asks.
"""

GiB = 1024**3


def _gib(size: int) -> int:
    return -(-size // GiB)


def _sort_key(key: str):
    if key in ("reference", "identifier"):  # Cinder's API names the reference "identifier"
        return lambda entry: str(entry["reference"])
    return lambda entry: entry[key]


def paginate(entries: list[dict], marker, limit, offset, sort_keys, sort_dirs) -> list[dict]:
    """Sort by ``sort_keys`` (``size``, ``reference``), then start after ``marker`` or at
    ``offset`` and keep ``limit`` entries, like Cinder's ``paginate_entries_list``."""
    keys = list(sort_keys or ["reference"])
    dirs = (list(sort_dirs or []) + ["asc"] * len(keys))[: len(keys)]
    for key, direction in reversed(list(zip(keys, dirs, strict=True))):
        entries = sorted(entries, key=_sort_key(key), reverse=direction == "desc")
    if marker:
        refs = [e["reference"] for e in entries]
        entries = entries[refs.index(marker) + 1 :] if marker in refs else []
    entries = entries[offset or 0 :]
    return entries[:limit] if limit else entries


class ManageableDriver:
    """The manage/unmanage calls of Cinder's ``ManageableVD`` and ``ManageableSnapshotsVD``."""

    backend = None

    def manage_existing_get_size(self, volume, existing_ref: dict) -> int:
        """Size in GiB of the volume that managing ``existing_ref`` makes."""
        return _gib(self.backend.existing_size(existing_ref))

    def manage_existing(self, volume, existing_ref: dict) -> dict:
        """Adopt the device ``existing_ref`` names as ``volume``."""
        self.backend.manage_existing(volume.id, existing_ref)
        return self._location(volume.id)

    def unmanage(self, volume) -> None:
        """Forget ``volume``; its data stays on the backend."""
        self.backend.unmanage(volume.id)

    def get_manageable_volumes(
        self, cinder_volumes, marker, limit, offset, sort_keys, sort_dirs
    ) -> list[dict]:
        """The backend's devices that could be managed, sizes in GiB."""
        managed = {v.id for v in cinder_volumes or []}
        entries = [e | {"size": _gib(e["size"])} for e in self.backend.manageable_volumes(managed)]
        return paginate(entries, marker, limit, offset, sort_keys, sort_dirs)

    def manage_existing_snapshot_get_size(self, snapshot, existing_ref: dict) -> int:
        """Size in GiB of the snapshot ``existing_ref`` names."""
        return _gib(self.backend.existing_snapshot_size(snapshot.volume_id, existing_ref))

    def manage_existing_snapshot(self, snapshot, existing_ref: dict) -> dict:
        """Adopt the snapshot ``existing_ref`` names as ``snapshot``."""
        self.backend.manage_existing_snapshot(snapshot.id, snapshot.volume_id, existing_ref)
        return self._location(snapshot.id)

    def get_manageable_snapshots(
        self, cinder_snapshots, marker, limit, offset, sort_keys, sort_dirs
    ) -> list[dict]:
        """The backend's snapshots that could be managed, sizes in GiB."""
        managed = {s.id for s in cinder_snapshots or []}
        entries = [
            e | {"size": _gib(e["size"])} for e in self.backend.manageable_snapshots(managed)
        ]
        return paginate(entries, marker, limit, offset, sort_keys, sort_dirs)

    def require_manage(self) -> None:
        """Refuse when the backend cannot manage or unmanage devices."""
        self.backend.require_manage()

    def unmanage_snapshot(self, snapshot) -> None:
        """Forget ``snapshot``; its data stays on the backend."""
        self.backend.unmanage(snapshot.id)
