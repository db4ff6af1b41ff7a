"""What the ``evs`` command calls: one object per way of reaching the volume manager.

``EmbeddedClient`` runs a ``VolumeManager`` in this process. A ``ServiceClient`` talking
to the ``evs-volume`` service over its socket offers the same methods and returns the
same plain dicts, so the command does not care which one it has.
"""

from oslo_config import cfg

from evs_driver import catalog
from evs_driver.manager import VolumeManager

VOLUME_FIELDS = (
    "id",
    "display_name",
    "display_description",
    "size",
    "status",
    "backend",
    "created_at",
    "updated_at",
    "source_snapshot_id",
    "source_volume_id",
    "full_clone",
    "progress",
    "metadata",
)
SNAPSHOT_FIELDS = (
    "id",
    "display_name",
    "display_description",
    "volume_id",
    "volume_size",
    "status",
    "backend",
    "created_at",
    "updated_at",
    "metadata",
)


def _rename(fields: dict) -> dict:
    """Catalog field names to the names operators see."""
    out = {}
    for key, value in fields.items():
        key = {"display_name": "name", "display_description": "description"}.get(key, key)
        out["size" if key == "volume_size" else key] = value
    return out


class EmbeddedClient:
    """Runs the operations in this process through a ``VolumeManager``."""

    def __init__(self, conf: cfg.ConfigOpts):
        self.conf = conf
        self.manager = VolumeManager(conf)

    def close(self) -> None:
        """Release the manager's backends."""
        self.manager.close()

    # -- views --------------------------------------------------------------------------
    def _volume(self, volume: catalog.Volume, usage: bool = False) -> dict:
        view = _rename({key: volume[key] for key in VOLUME_FIELDS})
        if usage:
            found = self.manager.usage(volume)
            view["mapped_bytes"] = found.mapped_bytes if found else None
            view["snapshots"] = len(self.manager.list_snapshots(volume.id))
        return view

    def _snapshot(self, snapshot: catalog.Snapshot) -> dict:
        view = _rename({key: snapshot[key] for key in SNAPSHOT_FIELDS})
        found = self.manager.usage(snapshot)
        view["exclusive_bytes"] = found.exclusive_bytes if found else None
        return view

    # -- pools --------------------------------------------------------------------------
    def pool_show(self) -> list[dict]:
        """One row per backend: where it lives and its Cinder statistics."""
        rows = []
        for name, stats in self.manager.pool_stats().items():
            driver = self.manager.drivers[name]
            rows.append(
                {"backend": name, "state_path": self.manager.state_path}
                | driver.describe()
                | stats
                | {"snapshots": driver.pool_stats().snapshot_count}
            )
        return rows

    def pool_check(self) -> dict[str, list[str]]:
        """Problems per backend (empty lists when clean)."""
        return self.manager.check()

    # -- volumes ------------------------------------------------------------------------
    def volume_create(self, **kwargs) -> dict:
        """Create a volume; see ``VolumeManager.create_volume``."""
        return self._volume(self.manager.create_volume(**kwargs))

    def volume_list(self) -> list[dict]:
        """Every volume."""
        return [self._volume(v) for v in self.manager.list_volumes()]

    def volume_show(self, ref: str) -> dict:
        """One volume, with its mapped bytes and snapshot count."""
        return self._volume(self.manager.get_volume(ref), usage=True)

    def volume_delete(self, ref: str, cascade: bool = False) -> None:
        """Delete a volume."""
        self.manager.delete_volume(ref, cascade=cascade)

    def volume_extend(self, ref: str, size: int) -> dict:
        """Grow a volume."""
        return self._volume(self.manager.extend_volume(ref, size))

    def volume_revert(self, ref: str, snapshot: str) -> dict:
        """Revert a volume to one of its snapshots."""
        return self._volume(self.manager.revert_volume(ref, snapshot))

    def volume_import(self, ref: str, path: str, progress=None) -> dict:
        """Write a raw image onto a volume."""
        written = self.manager.import_volume(ref, path, progress)
        return {"volume": self.manager.get_volume(ref).id, "file": path, "data_bytes": written}

    def volume_export(self, ref: str, path: str, progress=None) -> dict:
        """Write a volume to a raw image."""
        written = self.manager.export("volume", ref, path, progress)
        return {"volume": self.manager.get_volume(ref).id, "file": path, "data_bytes": written}

    def volume_reset_state(self, ref: str, state: str) -> dict:
        """Force a volume's status (operators only)."""
        return self._volume(self.manager.reset_status("volume", ref, state))

    # -- snapshots ----------------------------------------------------------------------
    def snapshot_create(self, volume: str, **kwargs) -> dict:
        """Snapshot a volume."""
        return self._snapshot(self.manager.create_snapshot(volume, **kwargs))

    def snapshot_list(self, volume: str | None = None) -> list[dict]:
        """Every snapshot, or one volume's."""
        return [self._snapshot(s) for s in self.manager.list_snapshots(volume)]

    def snapshot_show(self, ref: str) -> dict:
        """One snapshot with its exclusive bytes."""
        return self._snapshot(self.manager.get_snapshot(ref))

    def snapshot_delete(self, ref: str) -> None:
        """Delete a snapshot."""
        self.manager.delete_snapshot(ref)

    def snapshot_export(self, ref: str, path: str, progress=None) -> dict:
        """Write a snapshot to a raw image."""
        written = self.manager.export("snapshot", ref, path, progress)
        return {"snapshot": self.manager.get_snapshot(ref).id, "file": path, "data_bytes": written}

    def snapshot_reset_state(self, ref: str, state: str) -> dict:
        """Force a snapshot's status (operators only)."""
        return self._snapshot(self.manager.reset_status("snapshot", ref, state))


def make_client(conf: cfg.ConfigOpts) -> EmbeddedClient:
    """The client for this run: the in-process manager (a service client when one runs)."""
    return EmbeddedClient(conf)
