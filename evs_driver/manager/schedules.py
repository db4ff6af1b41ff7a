"""Snapshot schedules: their catalog rows, a run (one automatic snapshot), and retention.

A run claims its slot first (``next_run`` moves on in the catalog before the snapshot is
taken), so neither a failing snapshot nor a crash mid-run makes it run again at once, and a
service that was down for many intervals takes one catch-up snapshot, not one per interval.
Automatic snapshots are named with the reserved prefix; they count against their schedule's
retention, not against ``max_snapshots_per_volume``.
"""

import datetime

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, rules, scheduling
from evs_driver.manager.snapshots import SnapshotOperations

LOG = logging.getLogger(__name__)
SCHEDULE_VOLUME_GONE = ("deleting", "error_deleting")  # a schedule would only fail there


class ScheduleOperations(SnapshotOperations):
    """What a user may do to snapshot schedules, and what the service runs."""

    clock: scheduling.SystemClock = scheduling.SystemClock()  # the service sets its own

    def create_schedule(
        self, volume_ref: str, every: int, keep: int, keep_daily: int = 0, keep_weekly: int = 0
    ) -> cat.Schedule:
        """Snapshot ``volume_ref`` every ``every`` seconds (first one interval from now)."""
        scheduling.check_every(every)
        scheduling.check_keep(keep, keep_daily, keep_weekly)
        now = self.clock.now()
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", volume_ref)
            if volume.status in SCHEDULE_VOLUME_GONE:
                raise exception.InvalidStatus(
                    kind="Volume",
                    name=volume.id,
                    status=volume.status,
                    action="a schedule",
                    expected="not being deleted",
                )
            existing = txn.schedules(volume_id=volume.id)
            if existing:
                raise exception.ScheduleExists(volume=volume.id, schedule=existing[0].id)
            written = cat.now()
            schedule = cat.Schedule(
                id=cat.new_id(),
                volume_id=volume.id,
                every=every,
                keep=keep,
                keep_daily=keep_daily,
                keep_weekly=keep_weekly,
                anchor=scheduling.stamp(now),
                next_run=scheduling.stamp(scheduling.next_run(now, every, now)),
                created_at=written,
                updated_at=written,
            )
            txn.add_schedule(schedule)
        LOG.info(
            "Created schedule %s of volume %s: every %s, keep %d, daily %d, weekly %d",
            schedule.id,
            volume.id,
            scheduling.format_every(every),
            keep,
            keep_daily,
            keep_weekly,
        )
        return schedule

    def get_schedule(self, ref: str) -> cat.Schedule:
        """A schedule by its id, or by its volume's id or name."""
        with self.catalog.reading() as txn:
            return self._find_schedule(txn, ref)

    def _find_schedule(self, txn: cat.Txn, ref: str) -> cat.Schedule:
        if not isinstance(ref, str) or not ref:
            raise exception.InvalidInput(
                reason=f"a schedule is named by its id or its volume, not {ref!r}"
            )
        schedule = txn.schedule(ref)
        if schedule is not None:
            return schedule
        try:
            volume = self._find(txn, "volume", ref)
        except exception.NotFound:
            raise exception.NotFound(kind="Schedule (or volume)", name=ref) from None
        found = txn.schedules(volume_id=volume.id)
        if not found:
            raise exception.NoSchedule(name=ref)
        return found[0]

    def list_schedules(self, volume: str | None = None) -> list[cat.Schedule]:
        """Every schedule, or one volume's (id or name)."""
        with self.catalog.reading() as txn:
            if volume is None:
                return txn.schedules()
            return txn.schedules(volume_id=self._find(txn, "volume", volume).id)

    def delete_schedule(self, ref: str) -> None:
        """Stop a schedule; its snapshots stay. An id that matches nothing is already gone."""
        with self.catalog.transaction() as txn:
            try:
                schedule = self._find_schedule(txn, ref)
            except exception.NotFound:
                if rules.is_canonical_id(ref):
                    LOG.info("Schedule %s is already gone: nothing to delete", ref)
                    return
                raise
            txn.remove_schedule(schedule)
        LOG.info("Deleted schedule %s of volume %s", schedule.id, schedule.volume_id)

    def auto_snapshots(self, volume_id: str) -> list[cat.Snapshot]:
        """A volume's automatic snapshots, oldest first."""
        with self.catalog.reading() as txn:
            snapshots = txn.snapshots(volume_id=volume_id)
        return sorted((s for s in snapshots if scheduling.is_automatic(s.display_name)), key=_taken)

    # -- runs ------------------------------------------------------------------------------
    def run_due_schedules(self, now: datetime.datetime | None = None) -> list[dict]:
        """Run every schedule whose time has come (once each, however late)."""
        now = now or self.clock.now()
        self._realign(now)
        with self.catalog.reading() as txn:
            due = [s for s in txn.schedules() if scheduling.parse_stamp(s.next_run) <= now]
        results = []
        for schedule in due:
            try:
                result = self.run_schedule(schedule.id, now)
            except Exception:  # one broken schedule must not stop the others
                LOG.exception("Schedule %s failed", schedule.id)
                continue
            if result is not None:
                results.append(result)
        return results

    def _realign(self, now: datetime.datetime) -> None:
        """Put a schedule whose next run is more than one interval away (the clock was set
        back) on a grid from now, so it runs within one interval instead of much later."""
        with self.catalog.reading() as txn:
            ahead = [s for s in txn.schedules() if _due_in(s, now) > s.every]
        if not ahead:
            return
        with self.catalog.transaction() as txn:
            for schedule in txn.schedules():
                if _due_in(schedule, now) > schedule.every:
                    following = scheduling.next_run(now, schedule.every, now)
                    txn.update_schedule(
                        schedule, anchor=scheduling.stamp(now), next_run=scheduling.stamp(following)
                    )
                    LOG.warning(
                        "Schedule %s was due only at %s: the clock went back; it runs next at %s",
                        schedule.id,
                        schedule.next_run,
                        scheduling.stamp(following),
                    )

    def seconds_to_next_run(self, now: datetime.datetime) -> float | None:
        """How long until the earliest schedule is due (None: there is none)."""
        with self.catalog.reading() as txn:
            waits = [_due_in(s, now) for s in txn.schedules()]
        return max(0.0, min(waits)) if waits else None

    def run_schedule(self, schedule_id: str, now: datetime.datetime) -> dict | None:
        """Take a due schedule's snapshot and apply its retention; None if not due (now)."""
        with self.catalog.transaction() as txn:
            schedule = txn.schedule(schedule_id)
            if schedule is None or scheduling.parse_stamp(schedule.next_run) > now:
                return None
            anchor = scheduling.parse_stamp(schedule.anchor)
            following = scheduling.next_run(anchor, schedule.every, now)
            txn.update_schedule(schedule, next_run=scheduling.stamp(following))
        snapshot, error = None, None
        try:
            snapshot = self._take_snapshot(
                schedule.volume_id,
                name=scheduling.snapshot_name(now),
                description=f"Taken by schedule {schedule.id}",
                metadata={"schedule_id": schedule.id, "taken_at": scheduling.stamp(now)},
                automatic=True,
            )
        except exception.EVSError as exc:
            error = exc.msg
            LOG.error(
                "Schedule %s could not snapshot volume %s: %s",
                schedule.id,
                schedule.volume_id,
                error,
            )
        with self.catalog.transaction() as txn:
            if txn.schedule(schedule.id) is not None:  # not deleted meanwhile
                txn.update_schedule(
                    schedule,
                    last_run=scheduling.stamp(now),
                    last_snapshot_id=snapshot.id if snapshot else schedule.last_snapshot_id,
                    last_error=error,
                )
        pruned, kept_in_use = self.prune_schedule(schedule)
        return {
            "schedule_id": schedule.id,
            "snapshot_id": snapshot.id if snapshot else None,
            "error": error,
            "pruned": pruned,
            "kept_in_use": kept_in_use,
        }

    def prune_schedule(self, schedule: cat.Schedule) -> tuple[list[str], list[str]]:
        """Delete, oldest first, the automatic snapshots beyond the retention; one in use is
        kept (and logged) and tried again at the next run. Returns (pruned, kept in use)."""
        auto = self.auto_snapshots(schedule.volume_id)
        usable = [(s.id, _taken(s)) for s in auto if s.status == "available"]
        kept = scheduling.retained(usable, schedule.keep, schedule.keep_daily, schedule.keep_weekly)
        pruned, in_use = [], []
        for snapshot in auto:
            if snapshot.id in kept:
                continue
            reason = self._use_of(snapshot)
            if reason is None:
                try:
                    self.delete_snapshot(snapshot.id)
                except exception.EVSError as exc:
                    reason = exc.msg
                else:
                    pruned.append(snapshot.id)
                    continue
            in_use.append(snapshot.id)
            LOG.warning(
                "Schedule %s keeps snapshot %s (%s) beyond its retention: %s",
                schedule.id,
                snapshot.id,
                snapshot.display_name,
                reason,
            )
        return pruned, in_use

    def _use_of(self, snapshot: cat.Snapshot) -> str | None:
        """Why ``snapshot`` must not be pruned now, or None."""
        if snapshot.status != "available":
            return f"it is {snapshot.status}"
        with self.catalog.reading() as txn:
            linked = [
                v.id
                for v in txn.volumes(source_snapshot_id=snapshot.id)
                if not v.full_clone or v.status == "creating"
            ]
        if linked:
            return f"volume {linked[0]} was created from it and shares its blocks"
        served = self.served(snapshot)
        if served:
            return f"it is served at {served['uri']}"
        return None


def _taken(snapshot: cat.Snapshot) -> datetime.datetime:
    """When a schedule took the snapshot (by the schedule's clock)."""
    return scheduling.parse_stamp(snapshot.metadata.get("taken_at") or snapshot.created_at)


def _due_in(schedule: cat.Schedule, now: datetime.datetime) -> float:
    """Seconds until ``schedule`` is due (negative: overdue)."""
    return (scheduling.parse_stamp(schedule.next_run) - now).total_seconds()
