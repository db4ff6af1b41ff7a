"""Resolving what a crash left behind, and checking catalog and pools agree.

An intermediate status whose owning manager is gone (its owner token is no longer
locked) is finished when the backend shows the work done, else marked ``error*``:
- volume ``creating``: device present (and not a half-done full clone) → available, else error
- volume ``extending``: device at the new size → available at that size, else error_extending
- ``deleting`` (volume or snapshot): the delete is finished; a failure → error_deleting
- volume ``rollbacking``: cannot tell how far it got → error_rollbacking (revert again)
- snapshot ``creating``: device present → available, else error
- snapshot ``rollbacking``: the snapshot was never changed → available
- group ``creating``: → available (its new volumes, if any, are settled as above); group
  snapshot ``creating``: every member snapshot present → available, else error (the engine
  made all or none); group snapshot ``deleting``: its members are settled first, then the
  row goes
"""

from oslo_log import log as logging

from evs_driver import exception, rules
from evs_driver.catalog import GroupSnapshot, Snapshot
from evs_driver.units import GiB

LOG = logging.getLogger(__name__)
BUSY_TABLES = (
    ("snapshots", rules.SNAPSHOT_BUSY),
    ("volumes", rules.VOLUME_BUSY),
    ("groups", ("creating",)),
    ("group_snapshots", ("creating", "deleting")),
)


def _abandoned(manager, table: str, statuses, backend: str | None = None) -> list:
    with manager.catalog.reading() as txn:
        records = txn.in_status(table, statuses)
    return [
        r
        for r in records
        if (backend is None or r.backend == backend)
        and not manager.owner.is_alive((r.task or {}).get("owner"))
    ]


def recover_abandoned(manager) -> None:
    """Start every enabled backend that holds abandoned work, which resolves it.

    Backends start on first use; this makes a command that only reads the catalog (a
    listing) still see what a crash left behind resolved. A backend that is down keeps
    its records as they are until it is back.
    """
    backends = {r.backend for table, busy in BUSY_TABLES for r in _abandoned(manager, table, busy)}
    for name in sorted(backends):
        if name not in manager.drivers:
            continue
        try:
            manager.drivers[name]  # starting it runs recover_backend
        except exception.BackendUnavailable as exc:
            LOG.warning("Work interrupted on backend %s waits until it is back: %s", name, exc)


def recover_backend(manager, backend: str) -> int:
    """Resolve the abandoned intermediate statuses of one started backend; how many."""
    resolved = 0
    for snapshot in _abandoned(manager, "snapshots", rules.SNAPSHOT_BUSY, backend):
        _resolve(manager, snapshot, _snapshot_outcome)
        resolved += 1
    for volume in _abandoned(manager, "volumes", rules.VOLUME_BUSY, backend):
        _resolve(manager, volume, _volume_outcome)
        resolved += 1
    for table, busy in BUSY_TABLES[2:]:
        for record in _abandoned(manager, table, busy, backend):
            _resolve_group(manager, record)
            resolved += 1
    return resolved


def _resolve_group(manager, record) -> None:
    """Settle a group or group snapshot, after its member rows were settled."""
    with manager.lock(record.backend) as driver, manager.catalog.transaction() as txn:
        if isinstance(record, GroupSnapshot) and record.status == "deleting":
            for snapshot in txn.snapshots(group_snapshot_id=record.id):
                driver.delete_snapshot(snapshot)
                txn.remove(snapshot)
            txn.remove(record)
            LOG.warning("Recovered group snapshot %s from an interrupted delete", record.id)
            return
        status = "available"
        if isinstance(record, GroupSnapshot):
            members = txn.snapshots(group_snapshot_id=record.id)
            if not members or not all(s.status == "available" for s in members):
                status = "error"
        txn.move_status(record, status, expect=(record.status,), task=None)
    LOG.warning("Recovered %s %s from an interrupted create: %s", record.name, record.id, status)


def _resolve(manager, record, outcome) -> None:
    with manager.lock(record.backend) as driver:
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
    interrupted = record.status
    try:
        with manager.catalog.transaction() as txn:
            if fields is None:
                txn.remove(record)
            else:
                status = fields.pop("status")
                txn.move_status(record, status, expect=(interrupted,), task=None, **fields)
                fields["status"] = status
    except exception.StatusChanged as exc:
        LOG.info("Recovery of %s left to whoever changed it: %s", record.id, exc.msg)
        return
    LOG.warning(
        "Recovered %s %s from an interrupted %s: %s",
        type(record).__name__.lower(),
        record.id,
        interrupted,
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
    with manager.catalog.reading() as txn:
        volumes, snapshots = txn.volumes(), txn.snapshots()
    problems: dict[str, list[str]] = {}
    for name in manager.drivers:
        try:
            problems[name] = _check_backend(manager, name, volumes + snapshots)
        except exception.BackendUnavailable as exc:
            problems[name] = [exc.msg]
    for name in sorted({r.backend for r in volumes + snapshots} - set(manager.drivers)):
        count = sum(r.backend == name for r in volumes + snapshots)
        problems[name] = [
            f"backend {name} is not in enabled_backends but the catalog has {count} "
            "volume(s) and snapshot(s) on it"
        ]
    return problems


def _check_backend(manager, name: str, records: list) -> list[str]:
    found: list[str] = []
    with manager.lock(name) as driver:
        found.extend(driver.check().problems)
        mine = [r for r in records if r.backend == name]
        for record in mine:
            kind = type(record).__name__.lower()
            if record.status in ("creating", "extending", "deleting", "rollbacking"):
                found.append(f"{kind} {record.id} is {record.status} (operation in progress?)")
            elif record.status in ("available", "in-use") and not driver.device_exists(record):
                found.append(f"{kind} {record.id} ({record.status}) has no backend device")
        stats = driver.pool_stats()
        on_disk = stats.volume_count + stats.snapshot_count
        if on_disk > len(mine):
            found.append(f"the backend holds {on_disk} devices but the catalog knows {len(mine)}")
    return found
