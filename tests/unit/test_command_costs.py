"""What one embedded ``evs`` command costs: pool opens, syncs and imports, counted (not timed).

Each command runs in a process of its own (``evs`` sets up logging for its process), with
counters on the seams every sync goes through: the engine's ``Disk`` (the data file, the
pool's metadata log and file) and the catalog's ``LogSync``.
"""

import json
import os
import subprocess
import sys

import pytest

_COUNTING = """
import json, sys
from evs_driver import sqlitelog
from evs_driver.cmd import evs
from evs_driver.rowstore import disk
from evs_driver.rowstore.pool import Pool

counts = {"pool_opens": 0, "syncs": 0}

def counted(owner, name, key):
    real = getattr(owner, name)
    def count(*args, **kwargs):
        counts[key] += 1
        return real(*args, **kwargs)
    setattr(owner, name, count)

counted(disk.Disk, "fdatasync", "syncs")
counted(disk.Disk, "sync_path", "syncs")
counted(sqlitelog.LogSync, "sync", "syncs")
real_open = Pool.open.__func__

def counted_open(cls, *args, **kwargs):
    counts["pool_opens"] += 1
    return real_open(cls, *args, **kwargs)

Pool.open = classmethod(counted_open)
status = evs.main(sys.argv[1:])
print(json.dumps(counts), file=sys.stderr)
sys.exit(status)
"""


@pytest.fixture
def evs_counted(tmp_path):
    env = dict(os.environ, EVS_STATE_PATH=str(tmp_path / "state"), HOME=str(tmp_path))
    env.pop("EVS_FAULT_INJECT", None)

    def run(*argv: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _COUNTING, *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stderr.splitlines()[-1])

    run("volume", "create", "--size", "1", "--name", "v")
    run("snapshot", "create", "v", "--name", "first")  # the catalog's and pool's logs exist
    return run


@pytest.mark.parametrize(
    "argv", [("volume", "list"), ("volume", "show", "v"), ("snapshot", "list")]
)
def test_a_read_only_command_syncs_nothing(evs_counted, argv):
    counts = evs_counted(*argv)
    assert counts["syncs"] == 0, counts
    assert counts["pool_opens"] <= 1, counts


def test_a_snapshot_opens_the_pool_once_and_syncs_at_most_four_times(evs_counted):
    counts = evs_counted("snapshot", "create", "v", "--name", "second")
    assert counts == {"pool_opens": 1, "syncs": 3}, counts  # catalog, pool, catalog


def test_help_imports_neither_oslo_nor_the_driver():
    probe = (
        "import sys\n"
        "from evs_driver.cmd import evs\n"
        "try:\n"
        "    evs.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('oslo_config', 'oslo_log', 'evs_driver.manager', 'evs_driver.nbd',\n"
        "         'evs_driver.service', 'evs_driver.rowstore', 'evs_driver.catalog')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy\n"
        "             or any(m.startswith(h + '.') for h in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
