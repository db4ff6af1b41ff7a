"""Schedules without storage: intervals, the run grid, retention rules and the clocks."""

import datetime
import threading

import pytest

from evs_driver import exception, scheduling

T0 = datetime.datetime(2026, 1, 5, 0, 0, tzinfo=datetime.UTC)  # a Monday
HOUR = datetime.timedelta(hours=1)


@pytest.mark.parametrize(
    "text, seconds",
    [("1m", 60), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800), (" 1h ", 3600)],
)
def test_intervals_read(text, seconds):
    assert scheduling.parse_every(text) == seconds
    assert scheduling.parse_every(scheduling.format_every(seconds)) == seconds


@pytest.mark.parametrize(
    "text, says",
    [
        ("0", "is not an interval"),
        ("5x", "is not an interval"),
        ("1.5h", "is not an interval"),
        ("-1h", "is not an interval"),
        ("h", "is not an interval"),
        ("", "is not an interval"),
        ("１h", "is not an interval"),  # a full-width digit
        ("0m", "it must be 1m to 366d"),
        ("400d", "it must be 1m to 366d"),
    ],
)
def test_bad_intervals_say_what_to_give(text, says):
    with pytest.raises(exception.InvalidSchedule, match=says) as err:
        scheduling.parse_every(text)
    assert "\n" not in err.value.msg


@pytest.mark.parametrize(
    "keep, daily, weekly, says",
    [
        (0, 0, 0, "--keep is 0; it must be 1 to 1000"),
        (1, -1, 0, "--keep-daily is -1"),
        (1, 0, 1001, "--keep-weekly is 1001"),
        (True, 0, 0, "--keep must be a whole number"),
        ("3", 0, 0, "--keep must be a whole number"),
    ],
)
def test_bad_retention_is_refused(keep, daily, weekly, says):
    with pytest.raises(exception.InvalidSchedule, match=says):
        scheduling.check_keep(keep, daily, weekly)


def test_runs_stay_on_the_grid_and_a_long_gap_gives_one_run():
    every = 3600
    assert scheduling.next_run(T0, every, T0) == T0 + HOUR
    late = T0 + HOUR + datetime.timedelta(minutes=7)  # a late run does not shift the grid
    assert scheduling.next_run(T0, every, late) == T0 + 2 * HOUR
    after_downtime = T0 + 30 * HOUR + datetime.timedelta(seconds=1)
    assert scheduling.next_run(T0, every, after_downtime) == T0 + 31 * HOUR


def test_names_carry_the_reserved_prefix_and_the_time():
    name = scheduling.snapshot_name(T0 + datetime.timedelta(seconds=61))
    assert name == "autobk_snapshot_20260105T000101Z"
    assert scheduling.is_automatic(name)
    assert not scheduling.is_automatic("nightly") and not scheduling.is_automatic(None)


def _hourly(count: int, start=T0) -> list[tuple[str, datetime.datetime]]:
    return [(f"s{i}", start + i * HOUR) for i in range(count)]


def test_keep_holds_the_newest():
    taken = _hourly(30)
    assert scheduling.retained(taken, 24, 0, 0) == {f"s{i}" for i in range(6, 30)}


def test_keep_daily_holds_the_newest_of_each_recent_day():
    taken = _hourly(24 * 10)  # ten days of hourly snapshots
    kept = scheduling.retained(taken, 1, 7, 0)
    newest_of_day = {f"s{24 * d + 23}" for d in range(3, 10)}  # the last seven days
    assert kept == newest_of_day


def test_keep_weekly_counts_iso_weeks_that_have_snapshots():
    daily = [(f"d{i}", T0 + datetime.timedelta(days=i)) for i in range(35)]  # five weeks
    kept = scheduling.retained(daily, 1, 0, 3)
    # Sundays are the last day of an ISO week: the newest of weeks 3, 4 and 5 are d20, d27, d34.
    assert kept == {"d34", "d27", "d20"}


def test_rules_add_up_and_order_does_not_matter():
    taken = _hourly(24 * 3)
    kept = scheduling.retained(reversed(taken), 2, 3, 1)
    assert kept == {"s71", "s70", "s47", "s23"}


def test_accelerated_clock_runs_faster_and_waits_less():
    now = [100.0]
    clock = scheduling.AcceleratedClock(60, monotonic=lambda: now[0])
    start = clock.now()
    now[0] += 2.0
    assert clock.now() - start == datetime.timedelta(minutes=2)
    stop = threading.Event()
    stop.set()
    assert clock.wait(stop, 3600) is True


@pytest.mark.parametrize("value", ["0", "abc", "-5", "1e9"])
def test_the_test_clock_variable_is_checked(value):
    with pytest.raises(exception.ConfigError, match="EVS_TEST_CLOCK_SPEED"):
        scheduling.clock_from_env({scheduling.SPEED_ENV: value})


def test_no_test_clock_is_real_time():
    clock = scheduling.clock_from_env({})
    assert type(clock) is scheduling.SystemClock
    faster = scheduling.clock_from_env({scheduling.SPEED_ENV: "60"})
    assert isinstance(faster, scheduling.AcceleratedClock)
