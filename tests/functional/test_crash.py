"""Kill -9 a process working on a pool at random moments; everything durable must survive.

Per kill: the child replays a seeded operation stream and acknowledges each operation; the
parent SIGKILLs it after a random delay, reopens the pool (recovery), and checks that
- every snapshot acknowledged (and not deleted) exists with exactly the volume's content at
  that moment, and nothing else exists but an in-flight snapshot;
- each block of the volume holds what it held at the last durable point (an acknowledged
  flush or control operation) or something a later write put there;
- the checker is clean, and after collection no space is held by nothing.
The number of kills is EVS_CRASH_KILLS (default 200).
"""

import itertools
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from evs_driver.rowstore import Pool
from tests.functional import crash_model
from tests.functional import crash_workload as workload

KILLS = int(os.environ.get("EVS_CRASH_KILLS", "200"))
OPERATIONS = 1_000_000  # more than a child finishes before it is killed


def _read_blocks(pool, name):
    data = pool.read(name, 0, workload.VOLUME_SIZE)
    return [data[n * workload.CHUNK : (n + 1) * workload.CHUNK] for n in range(workload.BLOCKS)]


@pytest.mark.slow
def test_kill_9_loses_nothing_durable_and_leaks_nothing(tmp_path):
    path = str(tmp_path / "pool")
    # Chunks of four workload blocks: writes and discards after snapshots make overlays.
    chunk = 4 * workload.CHUNK
    with Pool.create(path, 4 * workload.BLOCKS * workload.CHUNK * 8, chunk) as pool:
        pool.create_volume("v", workload.VOLUME_SIZE)
    rng = random.Random(1234)
    blocks = [bytes(workload.CHUNK)] * workload.BLOCKS
    snapshots: dict = {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for kill in range(KILLS):
        seed = rng.randrange(1 << 30)
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.functional.crash_workload",
                path,
                str(seed),
                str(OPERATIONS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
        time.sleep(rng.uniform(0.15, 0.5))
        child.send_signal(signal.SIGKILL)
        output, errors = child.communicate()
        assert child.returncode == -signal.SIGKILL, errors.decode()[-2000:]
        acks = [int(line.split()[1]) for line in output.decode().splitlines() if line]
        acked = acks[-1] if acks else -1
        ops = list(itertools.islice(workload.operations(seed, OPERATIONS), acked + 2))
        replay = crash_model.Replay(ops, acked, blocks, snapshots)
        with Pool.open(path, background=False) as pool:
            names = {d.name for d in pool.devices()}
            replay.verify(names, lambda name: _read_blocks(pool, name))
            report = pool.check()
            assert report.clean, (kill, report.problems)
            for name in [d.name for d in pool.devices() if d.name != "v"][:-3]:
                pool.delete(name)  # keep the pool from filling up over many kills
            pool.collect()
            report = pool.check()
            assert report.clean, (kill, report.problems)
            blocks = _read_blocks(pool, "v")
            snapshots = {
                d.name: _read_blocks(pool, d.name) for d in pool.devices() if d.name != "v"
            }
