"""Two ``evs`` processes on one volume: exactly one wins, the other fails clearly.

The first command is held at a fault-injection point (``wait:FILE``) in the middle of its
operation, so the second one runs against its intermediate status every time, with no
timing assumptions.
"""

import subprocess
import time
import unittest

import ddt
import pytest

from tests.functional.cli.support import (
    TIMEOUT,
    env_for,
    evs,
    evs_cmd,
    evs_json,
    manager,
    one_line_error,
)

# (first command, its fault point, second command, text of the second's error)
CONFLICTS = [
    (
        "volume extend v --size 2",
        "extend_volume.after_backend",
        "volume delete v --cascade",
        "is extending",
    ),
    (
        "volume extend v --size 2",
        "extend_volume.after_backend",
        "volume extend v --size 2",
        "is extending",
    ),
    (
        "volume extend v --size 2",
        "extend_volume.after_backend",
        "snapshot create v",
        "is extending",
    ),
    ("volume revert v --snapshot s", "revert.after_backend", "snapshot delete s", "is rollbacking"),
    (
        "volume revert v --snapshot s",
        "revert.after_backend",
        "volume revert v --snapshot s",
        "is rollbacking",
    ),
    (
        "snapshot create v --name new",
        "create_snapshot.after_backend",
        "volume extend v --size 3",
        "being created",
    ),
    (
        "volume create --snapshot s",
        "create_volume.after_backend",
        "snapshot delete s",
        "being created from it",
    ),
    (
        "volume delete v --cascade",
        "delete_volume.snapshot_deleted",
        "volume extend v --size 2",
        "is deleting",
    ),
]


def wait_for_status(state, kind: str, status: str, proc) -> None:
    """Poll the catalog until the held command's record shows ``status``."""
    m = manager(state)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            records = m.list_volumes() if kind == "volume" else m.list_snapshots()
            if any(r.status == status for r in records):
                return
            time.sleep(0.05)
        raise AssertionError(f"no {kind} reached {status}")
    finally:
        m.close()


HELD_STATUS = {
    "extend_volume.after_backend": ("volume", "extending"),
    "revert.after_backend": ("volume", "rollbacking"),
    "create_snapshot.after_backend": ("snapshot", "creating"),
    "create_volume.after_backend": ("volume", "creating"),
    "delete_volume.snapshot_deleted": ("volume", "deleting"),
}


@ddt.ddt
class TestRace(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.tmp_path = tmp_path
        self.state = tmp_path / "state"
        m = manager(self.state)
        try:
            m.create_volume(1, name="v")
            m.create_snapshot("v", name="s")
        finally:
            m.close()

    @ddt.idata(CONFLICTS)
    @ddt.unpack
    def test_second_command_loses_clearly(self, first, point, second, text):
        release = self.tmp_path / "release"
        env = env_for(self.state, EVS_FAULT_INJECT=f"{point}=wait:{release}")
        proc = subprocess.Popen(
            evs_cmd(*first.split(" ")),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_status(self.state, *HELD_STATUS[point], proc)
            line = one_line_error(evs(self.state, *second.split(" ")))
            assert text in line, line
        finally:
            release.touch()
            out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        statuses = {v["status"] for v in evs_json(self.state, "volume", "list")}
        statuses |= {s["status"] for s in evs_json(self.state, "snapshot", "list")}
        assert statuses <= {"available"}, statuses
        check = evs(self.state, "pool", "check")
        assert check.returncode == 0, check.stdout + check.stderr


def test_two_identical_requests_at_once(tmp_path):
    """Started together, both held after their work: one extends, the other is refused."""
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    release = tmp_path / "release"
    env = env_for(state, EVS_FAULT_INJECT=f"extend_volume.after_backend=wait:{release}")
    procs = [
        subprocess.Popen(
            evs_cmd("volume", "extend", "v", "--size", "2"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        # The loser does not wait for the release: it fails on the status at once.
        loser_done = None
        deadline = time.monotonic() + TIMEOUT
        while loser_done is None and time.monotonic() < deadline:
            loser_done = next((p for p in procs if p.poll() is not None), None)
            time.sleep(0.05)
        assert loser_done is not None
    finally:
        release.touch()
        results = [p.communicate(timeout=TIMEOUT) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 1], results
    error = next(r[1] for r in results if r[2] == 1).strip()
    assert error.startswith("evs: error:") and "extending" in error
    vol = evs_json(state, "volume", "show", "v")
    assert (vol["size"], vol["status"]) == (2, "available")
    assert evs(state, "pool", "check").returncode == 0
