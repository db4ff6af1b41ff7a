"""Resolving what a crash left behind, and checking catalog and pools agree.

An intermediate status whose owning manager is gone (its owner token is no longer
locked) is finished when the backend shows the work done, else marked ``error*``:
- volume ``creating``: device present (and not a half-done full clone) → available, else error
- volume ``extending``: device at the new size → available at that size, else error_extending
- ``deleting`` (volume or snapshot): the delete is finished; a failure → error_deleting
- volume ``rollbacking``: cannot tell how far it got → error_rollbacking (revert again)
- snapshot ``creating``: device present → available, else error
- snapshot ``rollbacking``: the snapshot was never changed → available
"""

from oslo_log import log as logging

from evs_driver import exception, rules
from evs_driver.catalog import Snapshot

LOG = logging.getLogger(__name__)
GiB = 1024**3


def _abandoned(manager, table: str, statuses) -> list:
    with manager.catalog.transaction() as txn:
        records = txn.in_status(table, statuses)
    return [r for r in records if not manager.owner.is_alive((r.task or {}).get("owner"))]


def recover(manager) -> int:
    """Resolve every abandoned intermediate status; returns how many were resolved."""
    resolved = 0
    for snapshot in _abandoned(manager, "snapshots", rules.SNAPSHOT_BUSY):
        if snapshot.backend in manager.drivers:
            _resolve(manager, snapshot, _snapshot_outcome)
            resolved += 1
    for volume in _abandoned(manager, "volumes", rules.VOLUME_BUSY):
        if volume.backend in manager.drivers:
            _resolve(manager, volume, _volume_outcome)
            resolved += 1
    return resolved


def _resolve(manager, record, outcome) -> None:
    driver = manager.drivers[record.backend]
    with manager.lock(record.backend):
        fields = outcome(driver, record)
        if fields is None:
            delete = (
                driver.delete_snapshot if isinstance(record, Snapshot) else driver.delete_volume
            )
            try:
                delete(record)
            except exception.EVSError as exc:
                LOG.error("Recovery could not finish deleting %s: %s", record.id, exc)
                fields = {"status": "error_deleting"}
    with manager.catalog.transaction() as txn:
        if fields is None:
            txn.remove(record)
        else:
            txn.update(record, expect=(record.status,), task=None, **fields)
    LOG.warning(
        "Recovered %s %s from an interrupted %s: %s",
        type(record).__name__.lower(),
        record.id,
        record.status,
        "removed" if fields is None else fields["status"],
    )


def _volume_outcome(driver, volume) -> dict | None:
    """The fields that finish or fail an abandoned volume operation (None: remove the row)."""
    task = volume.task or {}
    if volume.status == "deleting":
        return None
    exists = driver.device_exists(volume)
    if volume.status == "creating":
        if exists and not task.get("full_clone"):
            return {"status": "available"}
        return {"status": "error"}
    if volume.status == "extending":
        new_size = task.get("new_size")
        if exists and new_size and driver.device_usage(volume).size >= new_size * GiB:
            return {"status": "available", "size": new_size}
        return {"status": "error_extending"}
    return {"status": "error_rollbacking"}


def _snapshot_outcome(driver, snapshot) -> dict | None:
    """The fields that finish or fail an abandoned snapshot operation (None: remove the row)."""
    if snapshot.status == "deleting":
        return None
    if snapshot.status == "creating":
        return {"status": "available" if driver.device_exists(snapshot) else "error"}
    return {"status": "available"}


def check(manager) -> dict[str, list[str]]:
    """Problems per backend: the backend's check, missing devices, count mismatches, stuck rows."""
    with manager.catalog.transaction() as txn:
        volumes, snapshots = txn.volumes(), txn.snapshots()
    problems: dict[str, list[str]] = {}
    for name, driver in manager.drivers.items():
        found: list[str] = []
        with manager.lock(name):
            found.extend(driver.check().problems)
            mine = [r for r in volumes + snapshots if r.backend == name]
            for record in mine:
                kind = type(record).__name__.lower()
                if record.status in ("creating", "extending", "deleting", "rollbacking"):
                    found.append(f"{kind} {record.id} is {record.status} (operation in progress?)")
                elif record.status in ("available", "in-use") and not driver.device_exists(record):
                    found.append(f"{kind} {record.id} ({record.status}) has no backend device")
            stats = driver.pool_stats()
            on_disk = stats.volume_count + stats.snapshot_count
            if on_disk > len(mine):
                found.append(
                    f"the backend holds {on_disk} devices but the catalog knows {len(mine)}"
                )
        problems[name] = found
    return problems
