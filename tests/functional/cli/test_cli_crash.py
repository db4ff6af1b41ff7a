"""Crash recovery: an ``evs`` process SIGKILLs itself mid-operation (fault injection, a real
kill), the next command recovers on start, and nothing is left stuck or inconsistent."""

import signal
import unittest

import ddt
import pytest

from evs_driver import rules
from tests.functional.cli.support import env_for, evs, evs_json, manager

GONE = None

# (command, kill point, expected {name: status or GONE} after recovery, expected size of v)
CRASHES = [
    ("volume create --size 1 --name n", "create_volume.before_backend", {"n": "error"}, 1),
    ("volume create --size 1 --name n", "create_volume.after_backend", {"n": "available"}, 1),
    (
        "volume create --source-volume v --full-clone --name n",
        "full_clone.progress",
        {"n": "error"},
        1,
    ),
    ("volume create --snapshot s --name n", "create_volume.after_backend", {"n": "available"}, 1),
    ("snapshot create v --name n", "create_snapshot.after_backend", {"n": "available"}, 1),
    ("snapshot delete s", "delete_snapshot.after_backend", {"s": GONE}, 1),
    ("volume delete v --cascade", "delete_volume.snapshot_deleted", {"v": GONE, "s": GONE}, None),
    ("volume delete w", "delete_volume.after_backend", {"w": GONE}, 1),
    ("volume extend v --size 2", "extend_volume.after_backend", {"v": "available"}, 2),
    (
        "volume revert v --snapshot s",
        "revert.after_backend",
        {"v": "error_rollbacking", "s": "available"},
        1,
    ),
]


@ddt.ddt
class TestCrash(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.state = tmp_path / "state"
        m = manager(self.state)
        try:
            m.create_volume(1, name="v")
            m.create_snapshot("v", name="s")
            m.create_volume(1, name="w")
        finally:
            m.close()

    @ddt.idata(CRASHES)
    @ddt.unpack
    def test_restart_resolves_the_crash(self, command, point, expected, size):
        env = env_for(self.state, EVS_FAULT_INJECT=f"{point}=kill")
        killed = evs(self.state, *command.split(" "), env=env)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        check = evs(self.state, "pool", "check")  # the first start after the crash recovers
        assert check.returncode == 0, check.stdout + check.stderr
        assert "Recovered" in check.stderr  # recovery says what it resolved
        records = evs_json(self.state, "volume", "list") + evs_json(self.state, "snapshot", "list")
        by_name = {r["name"]: r for r in records}
        busy = set(rules.VOLUME_BUSY) | set(rules.SNAPSHOT_BUSY)
        assert not [r for r in records if r["status"] in busy], records
        for name, status in expected.items():
            if status is GONE:
                assert name not in by_name, records
            else:
                assert by_name[name]["status"] == status, records
        if size is not None:
            assert by_name["v"]["size"] == size
        if by_name.get("v", {}).get("status") == "error_rollbacking":
            assert evs(self.state, "volume", "revert", "v", "--snapshot", "s").returncode == 0
        assert evs(self.state, "pool", "check").returncode == 0
