"""Snapshot schedules through the VolumeManager on the real local backend, by an injected
clock: retention, restarts, downtime, the snapshot limit, snapshots in use, bad input."""

import datetime
import os
import shutil
import sqlite3
import tempfile

import pytest

from evs_driver import catalog, exception, scheduling
from evs_driver.manager import VolumeManager
from evs_driver.service.service import VolumeService
from tests.unit.test_conf import make_conf

T0 = datetime.datetime(2026, 1, 5, 9, 0, 0, tzinfo=datetime.UTC)  # a Monday
HOUR = datetime.timedelta(hours=1)


class ManualClock(scheduling.SystemClock):
    """The test's time: it moves only when the test moves it."""

    def __init__(self, now: datetime.datetime):
        self.current = now

    def now(self) -> datetime.datetime:
        return self.current

    def advance(self, delta: datetime.timedelta) -> datetime.datetime:
        self.current += delta
        return self.current


def open_manager(tmp_path, clock, **overrides) -> VolumeManager:
    manager = VolumeManager(make_conf(tmp_path / "state", **overrides))
    manager.clock = clock
    return manager


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def m(tmp_path, clock):
    manager = open_manager(tmp_path, clock)
    manager.create_volume(1, name="v")
    yield manager
    manager.close()


def run_for(m: VolumeManager, clock: ManualClock, step: datetime.timedelta, runs: int) -> list:
    """Move the clock ``runs`` times by ``step``, running what is due each time."""
    results = []
    for _ in range(runs):
        results += m.run_due_schedules(clock.advance(step))
    return results


def auto_names(m: VolumeManager, volume: str = "v") -> list[str]:
    return [s.display_name for s in m.auto_snapshots(m.get_volume(volume).id)]


def stamp_name(when: datetime.datetime) -> str:
    return scheduling.snapshot_name(when)


# -- retention --------------------------------------------------------------------------------
def test_hourly_schedule_keeps_the_newest_and_prunes_oldest_first(m, clock):
    schedule = m.create_schedule("v", 3600, keep=3)
    assert scheduling.parse_stamp(schedule.next_run) == T0 + HOUR
    assert m.run_due_schedules(clock.advance(HOUR / 2)) == []  # not due yet
    results = run_for(m, clock, HOUR / 2, 1) + run_for(m, clock, HOUR, 4)
    assert [r["error"] for r in results] == [None] * 5
    assert auto_names(m) == [stamp_name(T0 + n * HOUR) for n in (3, 4, 5)]
    assert [r["pruned"] for r in results][3:] == [
        [results[0]["snapshot_id"]],
        [results[1]["snapshot_id"]],
    ]
    shown = m.get_schedule("v")
    assert shown.last_run == scheduling.stamp(T0 + 5 * HOUR)
    assert shown.last_snapshot_id == results[-1]["snapshot_id"]


def test_daily_retention_keeps_the_newest_of_each_recent_day(m, clock):
    m.create_schedule("v", 6 * 3600, keep=2, keep_daily=3)
    run_for(m, clock, 6 * HOUR, 20)  # five days, four snapshots a day
    taken = [T0 + 6 * HOUR * n for n in range(1, 21)]
    newest = taken[-2:]
    last_of_day = {}
    for when in taken:
        last_of_day[when.date()] = when
    daily = sorted(last_of_day.values())[-3:]
    assert auto_names(m) == [stamp_name(t) for t in sorted(set(newest) | set(daily))]


def test_weekly_retention_keeps_the_newest_of_each_recent_week(m, clock):
    m.create_schedule("v", 24 * 3600, keep=1, keep_weekly=2)
    run_for(m, clock, 24 * HOUR, 20)  # Tuesday of week 2 to Sunday of week 4
    # The newest of ISO weeks 4 and 3: Sunday 2026-01-25 (also the newest) and 2026-01-18.
    assert auto_names(m) == [
        "autobk_snapshot_20260118T090000Z",
        "autobk_snapshot_20260125T090000Z",
    ]


# -- restarts and downtime --------------------------------------------------------------------
def test_schedule_survives_a_restart_and_runs_on_from_its_last_run(tmp_path, clock):
    first = open_manager(tmp_path, clock)
    first.create_volume(1, name="v")
    created = first.create_schedule("v", 3600, keep=5, keep_daily=2, keep_weekly=1)
    run_for(first, clock, HOUR, 2)
    first.close()

    again = open_manager(tmp_path, clock)
    try:
        kept = again.get_schedule(created.id)
        assert (kept.every, kept.keep, kept.keep_daily, kept.keep_weekly) == (3600, 5, 2, 1)
        assert kept.last_run == scheduling.stamp(T0 + 2 * HOUR)
        assert kept.next_run == scheduling.stamp(T0 + 3 * HOUR)
        assert again.run_due_schedules(clock.advance(HOUR / 2)) == []
        assert len(again.run_due_schedules(clock.advance(HOUR / 2))) == 1
        assert len(auto_names(again)) == 3
    finally:
        again.close()


def test_missed_runs_after_downtime_give_one_catch_up_snapshot(m, clock):
    m.create_schedule("v", 3600, keep=24)
    run_for(m, clock, HOUR, 1)
    down_until = clock.advance(10 * HOUR + datetime.timedelta(minutes=20))
    results = m.run_due_schedules(down_until)
    assert len(results) == 1 and results[0]["error"] is None
    assert m.run_due_schedules(down_until) == []  # no replay of the other nine
    assert len(auto_names(m)) == 2
    assert m.get_schedule("v").next_run == scheduling.stamp(T0 + 12 * HOUR)  # on the grid


def test_a_failed_run_is_recorded_and_not_retried_until_its_next_time(m, clock):
    m.create_schedule("v", 3600, keep=2)
    m.reset_status("volume", "v", "error")
    (result,) = run_for(m, clock, HOUR, 1)
    assert result["snapshot_id"] is None and "is error" in result["error"]
    assert "is error" in m.get_schedule("v").last_error
    assert m.run_due_schedules(clock.now()) == []
    m.reset_status("volume", "v", "available")
    (result,) = run_for(m, clock, HOUR, 1)
    assert result["error"] is None and m.get_schedule("v").last_error is None


# -- the snapshot limit -----------------------------------------------------------------------
def test_automatic_snapshots_count_apart_from_the_user_limit(tmp_path, clock):
    m = open_manager(tmp_path, clock, max_snapshots_per_volume=2)
    try:
        m.create_volume(1, name="v")
        m.create_snapshot("v", name="mine-1")
        m.create_snapshot("v", name="mine-2")
        m.create_schedule("v", 3600, keep=3)
        results = run_for(m, clock, HOUR, 4)  # the limit does not stop the schedule
        assert [r["error"] for r in results] == [None] * 4
        assert len(auto_names(m)) == 3
        with pytest.raises(exception.SnapshotLimitExceeded, match="already has 2 snapshots"):
            m.create_snapshot("v", name="mine-3")
        m.delete_snapshot("mine-1")
        m.create_snapshot("v", name="mine-3")  # automatic ones do not take the freed place
        names = {s.display_name for s in m.list_snapshots("v")}
        assert {"mine-2", "mine-3"} <= names  # and retention never prunes a user's snapshot
    finally:
        m.close()


def test_users_cannot_take_the_reserved_prefix(m):
    with pytest.raises(exception.InvalidInput, match="reserved"):
        m.create_snapshot("v", name="autobk_snapshot_20260105T100000Z")


# -- snapshots in use ---------------------------------------------------------------------------
def test_a_snapshot_with_a_linked_clone_is_kept_and_pruned_once_free(m, clock, caplog):
    m.create_schedule("v", 3600, keep=1)
    (first,) = run_for(m, clock, HOUR, 1)
    clone = m.create_volume(name="clone", snapshot=first["snapshot_id"])
    m.create_volume(name="copy", snapshot=first["snapshot_id"], full_clone=True)
    results = run_for(m, clock, HOUR, 2)
    assert [r["kept_in_use"] for r in results] == [[first["snapshot_id"]]] * 2
    assert f"volume {clone.id} was created from it" in caplog.text
    assert len(auto_names(m)) == 2  # the one in use and the newest
    m.delete_volume("clone")
    (result,) = run_for(m, clock, HOUR, 1)
    assert first["snapshot_id"] in result["pruned"]  # the full copy never held it
    assert len(auto_names(m)) == 1


def test_a_snapshot_not_available_is_kept(m, clock):
    m.create_schedule("v", 3600, keep=1)
    (first,) = run_for(m, clock, HOUR, 1)
    m.reset_status("snapshot", first["snapshot_id"], "error_deleting")
    (result,) = run_for(m, clock, HOUR, 1)
    assert result["kept_in_use"] == [first["snapshot_id"]] and result["pruned"] == []
    m.reset_status("snapshot", first["snapshot_id"], "available")
    (result,) = run_for(m, clock, HOUR, 1)
    assert len(result["pruned"]) == 2  # both older ones, oldest first
    assert result["pruned"][0] == first["snapshot_id"]


def test_a_served_snapshot_is_kept(clock):
    state = tempfile.mkdtemp(prefix="evssch-", dir="/tmp")  # unix socket paths are short
    service = VolumeService(make_conf(state))
    try:
        service.manager.clock = clock
        service.request("volume_create", size=1, name="v")
        service.request("schedule_create", "v", every=3600, keep=1)
        (first,) = run_for(service.manager, clock, HOUR, 1)
        service.request("snapshot_serve", first["snapshot_id"])
        (result,) = run_for(service.manager, clock, HOUR, 1)
        assert result["kept_in_use"] == [first["snapshot_id"]]
        service.request("snapshot_unserve", first["snapshot_id"])
        (result,) = run_for(service.manager, clock, HOUR, 1)
        assert first["snapshot_id"] in result["pruned"]
    finally:
        service.close()
        shutil.rmtree(state, ignore_errors=True)


# -- volumes and schedules ----------------------------------------------------------------------
def test_deleting_a_volume_deletes_its_schedule_but_needs_cascade_for_its_snapshots(m, clock):
    schedule = m.create_schedule("v", 3600, keep=2)
    run_for(m, clock, HOUR, 1)
    with pytest.raises(exception.VolumeHasSnapshots):
        m.delete_volume("v")
    assert m.get_schedule(schedule.id).id == schedule.id
    m.delete_volume("v", cascade=True)
    assert m.list_schedules() == []
    assert m.run_due_schedules(clock.advance(HOUR)) == []


def test_deleting_a_schedule_keeps_its_snapshots(m, clock):
    schedule = m.create_schedule("v", 3600, keep=2)
    run_for(m, clock, HOUR, 2)
    m.delete_schedule("v")
    m.delete_schedule(schedule.id)  # already gone: fine
    assert len(auto_names(m)) == 2
    assert m.run_due_schedules(clock.advance(HOUR)) == []


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, error, says",
    [
        (("nope", 3600, 1), exception.NotFound, "Volume nope not found"),
        (("v", 0, 1), exception.InvalidSchedule, "must be 1m to 366d"),
        (("v", 59, 1), exception.InvalidSchedule, "must be 1m to 366d"),
        (("v", "1h", 1), exception.InvalidSchedule, "whole seconds"),
        (("v", 3600, 0), exception.InvalidSchedule, "--keep is 0"),
        (("v", 3600, 1, -1), exception.InvalidSchedule, "--keep-daily is -1"),
    ],
)
def test_bad_schedules_are_refused_and_change_nothing(m, args, error, says):
    with pytest.raises(error, match=says) as err:
        m.create_schedule(*args)
    assert "\n" not in err.value.msg
    assert m.list_schedules() == []


def test_one_schedule_per_volume(m):
    first = m.create_schedule("v", 3600, keep=1)
    with pytest.raises(exception.ScheduleExists, match=f"evs schedule delete {first.id}"):
        m.create_schedule("v", 60, keep=5)
    assert [s.every for s in m.list_schedules("v")] == [3600]


def test_unknown_schedules_are_named_in_the_error(m):
    with pytest.raises(exception.NoSchedule, match="evs schedule create v"):
        m.get_schedule("v")
    with pytest.raises(exception.NotFound, match="nope not found"):
        m.delete_schedule("nope")
    m.delete_schedule("0b5c5c4e-43a4-4a43-9a55-1e7c8a6b7a01")  # an id of nothing: gone


# -- the catalog ----------------------------------------------------------------------------
def test_a_catalog_from_before_schedules_gets_the_table_and_keeps_its_rows(tmp_path, clock):
    path = tmp_path / "old.sqlite"
    old = catalog.Catalog(str(path))
    with old.transaction() as txn:
        stamp = catalog.now()
        txn.add(catalog.Volume("vol-1", "v", None, 1, "available", "local", stamp, stamp))
    old.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE schedules")
    upgraded = catalog.Catalog(str(path))
    try:
        with upgraded.reading() as txn:
            assert txn.volume("vol-1").display_name == "v"
            assert txn.schedules() == []
    finally:
        upgraded.close()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_clock_set_back_does_not_stall_the_schedule(m, clock):
    m.create_schedule("v", 3600, keep=3)
    run_for(m, clock, HOUR, 1)
    clock.advance(-48 * HOUR)  # the host's clock was wrong, and is corrected
    assert m.run_due_schedules(clock.now()) == []
    assert m.get_schedule("v").next_run == scheduling.stamp(clock.now() + HOUR)
    assert len(run_for(m, clock, HOUR, 1)) == 1
