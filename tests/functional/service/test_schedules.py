"""Snapshot schedules run by a real ``evs-volume``, driven by real ``evs`` commands.

The service's clock runs fast through the test-only ``EVS_TEST_CLOCK_SPEED`` (a minute of
its time per real second), so a ``--every 1m`` schedule runs several times in seconds; the
waits below only bound a hang, nothing asserts how long anything took.
"""

import datetime
import time

import pytest

from evs_driver import scheduling
from tests.functional.cli.support import TIMEOUT, evs
from tests.functional.service.support import Service, ok

SPEED = {scheduling.SPEED_ENV: "60"}


def _schedule(state) -> dict:
    return ok(state, "schedule", "show", "v")


def _wait_for(state, done, what: str) -> dict:
    """The schedule (``evs schedule show``) once ``done(schedule)`` holds."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        shown = _schedule(state)
        if done(shown):
            return shown
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}: {shown}")
        time.sleep(0.2)


def _auto_names(state) -> list[str]:
    names = [s["name"] for s in ok(state, "snapshot", "list", "--volume", "v")]
    return sorted(n for n in names if scheduling.is_automatic(n))


def test_a_service_runs_a_schedule_keeps_its_retention_and_resumes_after_restart(state):
    service = Service(state, f"{state}/service.log", **SPEED).start()
    try:
        ok(state, "volume", "create", "--size", "1", "--name", "v")
        ok(state, "snapshot", "create", "v", "--name", "mine")
        created = ok(state, "schedule", "create", "v", "--every", "1m", "--keep", "2")
        assert (created["every"], created["keep"], created["last_run"]) == ("1m", 2, None)
        fourth = scheduling.parse_stamp(created["next_run"]) + datetime.timedelta(minutes=3)
        shown = _wait_for(
            state,
            lambda s: s["last_run"] and scheduling.parse_stamp(s["last_run"]) >= fourth,
            "four runs",
        )
        assert shown["last_error"] is None
    finally:
        assert service.stop() == 0, service.log_text()
    # Stopped: the run in progress finished, so retention has been applied.
    autos = _auto_names(state)
    assert len(autos) == 2, autos
    shown = _schedule(state)  # runs went on until the stop
    assert autos[-1] == scheduling.snapshot_name(scheduling.parse_stamp(shown["last_run"]))
    assert "mine" in [s["name"] for s in ok(state, "snapshot", "list")]
    assert "Deleted snapshot" in service.log_text()

    restarted = Service(state, f"{state}/service.log", **SPEED).start()
    try:
        assert [s["volume_id"] for s in ok(state, "schedule", "list")] == [created["volume_id"]]
        _wait_for(
            state,
            lambda s: s["last_snapshot_id"] != shown["last_snapshot_id"],
            "a run after the restart",
        )
    finally:
        assert restarted.stop() == 0, restarted.log_text()
    assert len(_auto_names(state)) == 2


@pytest.mark.parametrize(
    "args, status, says",
    [
        (("--every", "0", "--keep", "1"), 2, "argument --every: '0' is not an interval"),
        (("--every", "5x", "--keep", "1"), 2, "argument --every: '5x' is not an interval"),
        (("--every", "30s", "--keep", "1"), 2, "unit m, h, d or w"),
        (("--every", "1h", "--keep", "0"), 1, "--keep is 0; it must be 1 to 1000"),
        (("--every", "1h", "--keep", "x"), 2, "argument --keep: 'x' is not a whole number"),
        (("--every", "1h"), 2, "the following arguments are required: --keep"),
    ],
)
def test_bad_schedules_get_one_line_errors(state, args, status, says):
    assert evs(state, "volume", "create", "--size", "1", "--name", "v").returncode == 0
    result = evs(state, "schedule", "create", "v", *args)
    assert result.returncode == status, result.stderr
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert ok(state, "schedule", "list") == []


def test_unknown_volumes_and_the_reserved_prefix_are_refused_without_a_service(state):
    result = evs(state, "schedule", "create", "nope", "--every", "1h", "--keep", "1")
    assert result.returncode == 1 and "Volume nope not found" in result.stderr
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    result = evs(state, "schedule", "show", "v")
    assert result.returncode == 1 and "evs schedule create v" in result.stderr
    result = evs(state, "snapshot", "create", "v", "--name", "autobk_snapshot_20260101T000000Z")
    assert result.returncode == 1 and "reserved" in result.stderr
    result = evs(state, "schedule", "create", "v", "--every", "1h", "--keep", "1")
    assert result.returncode == 0 and "No evs-volume runs now" in result.stderr  # it waits
