"""Snapshot schedules without storage: intervals, clocks, when a schedule is due, and which of
its snapshots its retention keeps.

Times are timezone-aware UTC datetimes; days and ISO weeks for retention are UTC days and
weeks. Nothing here sleeps on its own: the service's loop asks a clock, so tests inject one.
"""

import datetime
import os
import re
import threading
import time
from collections.abc import Callable, Iterable

from evs_driver import exception, rules

UTC = datetime.UTC
MIN_EVERY = 60  # seconds: a schedule runs at most once a minute
MAX_EVERY = 366 * 24 * 3600
MAX_KEEP = 1000  # retention per rule; bounds the automatic snapshots of one volume
AUTO_PREFIX = rules.RESERVED_SNAPSHOT_PREFIX  # only schedules name snapshots so
SPEED_ENV = "EVS_TEST_CLOCK_SPEED"  # test-only: evs-volume's clock runs this many times faster
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^([0-9]+)([mhdw])$")


# -- intervals -----------------------------------------------------------------------------
def parse_every(text: str) -> int:
    """``30m``, ``1h``, ``1d``, ``2w``: a schedule's interval in seconds."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) and text.isascii() else None
    if not match:
        raise exception.InvalidSchedule(
            reason=f"{text!r} is not an interval: give a whole number and a unit "
            "m, h, d or w (e.g. 30m, 1h, 1d)"
        )
    return check_every(int(match.group(1)) * _UNITS[match.group(2)])


def check_every(seconds) -> int:
    """An interval in seconds, one minute to a year; returns it."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise exception.InvalidSchedule(
            reason=f"the interval must be whole seconds, not {seconds!r}"
        )
    if not MIN_EVERY <= seconds <= MAX_EVERY:
        raise exception.InvalidSchedule(
            reason=f"the interval is {format_every(seconds)}; it must be 1m to 366d"
        )
    return seconds


def format_every(seconds: int) -> str:
    """An interval in the largest unit that divides it (``3600`` -> ``1h``)."""
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_keep(keep, keep_daily, keep_weekly) -> None:
    """Retention: ``keep`` at least 1 (the newest are always kept), the others 0 or more."""
    for flag, value, least in (
        ("--keep", keep, 1),
        ("--keep-daily", keep_daily, 0),
        ("--keep-weekly", keep_weekly, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise exception.InvalidSchedule(reason=f"{flag} must be a whole number, not {value!r}")
        if not least <= value <= MAX_KEEP:
            raise exception.InvalidSchedule(
                reason=f"{flag} is {value}; it must be {least} to {MAX_KEEP}"
                + (" (a schedule keeps at least its newest snapshot)" if least else "")
            )


# -- when ------------------------------------------------------------------------------------
def next_run(anchor: datetime.datetime, every: int, after: datetime.datetime) -> datetime.datetime:
    """The first time ``anchor + k * every`` (k >= 1) that is later than ``after``.

    Runs stay on the schedule's grid whatever delays a run, and a service that was down for
    many intervals gets one run (the catch-up), not one per missed interval.
    """
    step = datetime.timedelta(seconds=every)
    missed = max(0, (after - anchor) // step)
    return anchor + step * (missed + 1)


def stamp(when: datetime.datetime) -> str:
    """A time as the catalog stores it (ISO 8601, UTC, whole seconds)."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def parse_stamp(text: str) -> datetime.datetime:
    """A stored time back as a datetime."""
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


def snapshot_name(when: datetime.datetime) -> str:
    """An automatic snapshot's name: the reserved prefix and the UTC time it was taken."""
    return AUTO_PREFIX + when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def is_automatic(name: str | None) -> bool:
    """True for a snapshot a schedule took (only schedules may use the prefix)."""
    return bool(name) and name.startswith(AUTO_PREFIX)


# -- retention -------------------------------------------------------------------------------
def retained(
    taken: Iterable[tuple[str, datetime.datetime]], keep: int, keep_daily: int, keep_weekly: int
) -> set[str]:
    """The ids that retention keeps from ``(id, taken at)`` pairs: the ``keep`` newest, and
    the newest of each of the ``keep_daily`` latest UTC days (``keep_weekly`` ISO weeks) that
    have a snapshot. A snapshot is kept when any rule keeps it."""
    newest_first = sorted(taken, key=lambda item: item[1], reverse=True)
    kept = {snap_id for snap_id, _ in newest_first[:keep]}
    for count, period in ((keep_daily, _day), (keep_weekly, _week)):
        periods: set = set()
        for snap_id, when in newest_first:
            if len(periods) >= count:
                break
            if period(when) not in periods:
                periods.add(period(when))
                kept.add(snap_id)
    return kept


def _day(when: datetime.datetime) -> datetime.date:
    return when.astimezone(UTC).date()


def _week(when: datetime.datetime) -> tuple[int, int]:
    year, week, _ = when.astimezone(UTC).isocalendar()
    return year, week


# -- clocks ----------------------------------------------------------------------------------
class SystemClock:
    """The real time."""

    def now(self) -> datetime.datetime:
        """The current UTC time."""
        return datetime.datetime.now(UTC)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` of this clock's time, or until ``stop`` is set (True then)."""
        return stop.wait(seconds)


class AcceleratedClock(SystemClock):
    """Test-only: time that runs ``speed`` times faster than real time from its creation, so
    a functional test sees a real service run an hourly schedule in seconds."""

    def __init__(self, speed: float, monotonic: Callable[[], float] = time.monotonic):
        self.speed = speed
        self._monotonic = monotonic
        self._start = datetime.datetime.now(UTC)
        self._started = monotonic()

    def now(self) -> datetime.datetime:
        """The accelerated UTC time."""
        elapsed = (self._monotonic() - self._started) * self.speed
        return self._start + datetime.timedelta(seconds=elapsed)

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` of accelerated time."""
        return stop.wait(seconds / self.speed)


def clock_from_env(environ=os.environ) -> SystemClock:
    """The service's clock: real time, unless the test-only ``EVS_TEST_CLOCK_SPEED`` is set."""
    speed = environ.get(SPEED_ENV)
    if not speed:
        return SystemClock()
    try:
        factor = float(speed)
    except ValueError:
        factor = 0.0
    if not 1 <= factor <= 100000:
        raise exception.ConfigError(
            reason=f"{SPEED_ENV}={speed!r} (test-only) must be a number from 1 to 100000; "
            "unset it outside tests"
        )
    return AcceleratedClock(factor)
