"""What users see of catalog records and pools: the same fields, in the same order,
whether the ``evs`` process or the service answers. Sizes in bytes end in ``_bytes``
(tables print them human-readable, JSON keeps the number)."""

from typing import TYPE_CHECKING

from evs_driver import exception

if TYPE_CHECKING:  # the command line's parser imports this module: nothing heavy at import
    from evs_driver import catalog

VOLUME_FIELDS = (
    ("id", "id"),
    ("name", "display_name"),
    ("description", "display_description"),
    ("size", "size"),
    ("status", "status"),
    ("backend", "backend"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("source_snapshot_id", "source_snapshot_id"),
    ("source_volume_id", "source_volume_id"),
    ("full_clone", "full_clone"),
    ("progress", "progress"),
    ("metadata", "metadata"),
)
SNAPSHOT_FIELDS = (
    ("id", "id"),
    ("name", "display_name"),
    ("description", "display_description"),
    ("volume_id", "volume_id"),
    ("size", "volume_size"),
    ("status", "status"),
    ("backend", "backend"),
    ("created_at", "created_at"),
    ("updated_at", "updated_at"),
    ("metadata", "metadata"),
)
VOLUME_COLUMNS = ("id", "name", "size", "status", "backend", "backend_status", "created_at")
SNAPSHOT_COLUMNS = (
    "id",
    "name",
    "volume_id",
    "size",
    "exclusive_bytes",
    "status",
    "created_at",
)


def backend_status(manager, backend: str) -> str:
    """ "enabled", "not enabled", or "down: <reason>" as this process knows it."""
    down = manager.drivers.unavailable(backend)
    if down is None:
        return "enabled"
    return "not enabled" if backend not in manager.drivers else f"down: {down.msg}"


def volume(manager, record: "catalog.Volume", usage: bool = False) -> dict:
    """A volume; with ``usage``, its mapped bytes and snapshot count too."""
    view = {shown: record[field] for shown, field in VOLUME_FIELDS}
    found = _usage(manager, record, wait=True) if usage else None  # may find the backend down
    view["backend_status"] = backend_status(manager, record.backend)
    if usage:
        view["mapped_bytes"] = found.mapped_bytes if found else None
        view["snapshots"] = len(manager.list_snapshots(record.id))
        view["attachments"] = [
            f"{a['protocol']} {a['initiator']}" for a in manager.block_attachments(record.id)
        ]
    return view


def snapshot(manager, record: "catalog.Snapshot", wait: bool = True) -> dict:
    """A snapshot with its exclusive bytes (None when they cannot be read now)."""
    view = {shown: record[field] for shown, field in SNAPSHOT_FIELDS}
    found = _usage(manager, record, wait)
    view["backend_status"] = backend_status(manager, record.backend)
    view["exclusive_bytes"] = found.exclusive_bytes if found else None
    return view


def _usage(manager, record, wait: bool):
    """The record's usage, or None when its backend is unavailable or (``wait=False``) busy
    in another process: a listing shows what the catalog knows instead of waiting."""
    try:
        return manager.usage(record, wait=wait)
    except exception.BackendUnavailable:
        return None
    except exception.ConcurrentOperation:
        if wait:
            raise
        return None


def pool(manager, name: str, stats) -> dict:
    """One backend's row of ``pool show``: where it lives, its state, space and counts."""
    row = {"backend": name, "state_path": manager.state_path}
    if isinstance(stats, exception.BackendUnavailable):
        return row | {"state": "down", "reason": stats.kwargs.get("reason", stats.msg)}
    driver = manager.drivers[name]
    raw = driver.pool_stats()
    return (
        row
        | {"state": "up"}
        | driver.describe()
        | {
            "total_bytes": raw.total_bytes,
            "used_bytes": raw.total_bytes - raw.free_bytes,
            "allocated_bytes": raw.allocated_bytes,
            "free_bytes": raw.free_bytes,
            "provisioned_bytes": raw.provisioned_bytes,
            "metadata_bytes": raw.metadata_bytes,
            "volumes": raw.volume_count,
            "snapshots": raw.snapshot_count,
        }
        | stats
    )


SCHEDULE_COLUMNS = ("id", "volume_id", "every", "keep", "keep_daily", "keep_weekly", "next_run")


SCHEDULE_FIELDS = (
    "id",
    "volume_id",
    "every",
    "keep",
    "keep_daily",
    "keep_weekly",
    "next_run",
    "last_run",
    "last_snapshot_id",
    "last_error",
    "snapshots",
    "created_at",
)


def schedule(manager, record: "catalog.Schedule") -> dict:
    """A schedule with its interval as text and how many automatic snapshots it has now."""
    from evs_driver import scheduling  # not at import: the parser imports this module

    view = record.to_dict()
    view["every"] = scheduling.format_every(record.every)
    view["snapshots"] = len(manager.auto_snapshots(record.volume_id))
    return {key: view[key] for key in SCHEDULE_FIELDS}
