"""Changed-block diffs cost what changed, not the volume's size (issue 16), in one run.

``python -m bench.diff_bench [--pairs N] [--dir DIR]``: a 1 GiB and a 64 GiB volume of one
``local`` pool get the same changes at the same places (within the first GiB): a base of 256
whole chunks, snapshot s1, then 256 writes of 4 KiB into them and 16 of them discarded,
snapshot s2. Then, 64 GiB (A) against 1 GiB (B) in interleaved pairs: the manager's
``diff_snapshots`` and ``export_diff`` called in process (the cost itself), and the whole
embedded ``evs snapshot diff s2 --from s1`` and ``evs snapshot export s2 FILE --from s1``
commands (what an operator waits for, Python's start included). A last row diffs a third
volume, 64 GiB with the same changes spread over all of it: there each change has leaves
and nodes of its own, so the cost follows the metadata the changes touch (still not the
size). Medians with their spread (min-max), and the load average before and after.
"""

import os
import random
import shutil
import tempfile
import time

from oslo_config import cfg

from bench.helpers import (
    bench_args,
    evs,
    evs_env,
    interleaved,
    print_table,
    ratio_row,
    run_timed,
)
from evs_driver.conf import register_opts
from evs_driver.manager import VolumeManager

KiB, GiB = 1 << 10, 1 << 30
CHUNK = 64 * KiB  # the pool's default chunk
# The volumes, and the span over which their changes are placed.
VOLUMES = {"big": (64 * GiB, GiB), "small": (GiB, GiB), "wide": (64 * GiB, 64 * GiB)}
BASE_WRITES, CHANGED_WRITES, DISCARDS = 256, 256, 16
DIFF = "diff_snapshots (in process)"


def _manager(state: str) -> VolumeManager:
    """An in-process manager on the state path the ``evs`` commands use."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="evs_driver", default_config_files=[])
    conf.set_override("state_path", state)
    return VolumeManager(conf)


def _populate(manager: VolumeManager, name: str) -> None:
    """Volume ``name`` with snapshots ``name-s1`` (a base of whole chunks) and ``name-s2``
    (4 KiB rewritten in some of them, others discarded), at the same places for a span."""
    size, span = VOLUMES[name]
    rng = random.Random(16)
    chunks = [c * CHUNK for c in rng.sample(range(span // CHUNK), BASE_WRITES)]
    volume = manager.create_volume(size=size // GiB, name=name)
    with manager.lock(volume.backend) as driver, driver.open_device(volume, True) as device:
        for offset in chunks:
            device.write(offset, rng.randbytes(CHUNK))
        device.flush()
    manager.create_snapshot(volume.id, name=f"{name}-s1")
    with manager.lock(volume.backend) as driver, driver.open_device(volume, True) as device:
        for _ in range(CHANGED_WRITES):
            block = rng.randrange(CHUNK // (4 * KiB)) * 4 * KiB
            device.write(rng.choice(chunks) + block, rng.randbytes(4 * KiB))
        for offset in rng.sample(chunks, DISCARDS):
            device.discard(offset, CHUNK)
        device.flush()
    manager.create_snapshot(volume.id, name=f"{name}-s2")


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _big_vs_small(pairs: int, measure) -> tuple[list[float], list[float]]:
    """``measure(name)`` of the 64 GiB volume (A) and of the 1 GiB one (B), interleaved."""
    return interleaved(pairs, lambda: measure("big"), lambda: measure("small"))


def _rows(pairs: int, workdir: str, env: dict) -> tuple[list[str], dict]:
    """The rows, and one diff of the 64 GiB volume (to show what changed)."""
    stream = os.path.join(workdir, "stream.evsdiff")

    def export(manager: VolumeManager, name: str) -> float:
        seconds = _timed(lambda: manager.export_diff(f"{name}-s2", stream, f"{name}-s1"))
        os.unlink(stream)
        return seconds

    def export_command(name: str) -> float:
        command = ("snapshot", "export", f"{name}-s2", stream, "--from", f"{name}-s1")
        seconds = run_timed(evs(*command), env)[0]
        os.unlink(stream)
        return seconds

    manager = _manager(env["EVS_STATE_PATH"])
    try:
        for name in VOLUMES:
            _populate(manager, name)
        diff = manager.diff_snapshots("big-s2", "big-s1")
        measures = {
            DIFF: lambda name: _timed(lambda: manager.diff_snapshots(f"{name}-s2", f"{name}-s1")),
            "export_diff (in process)": lambda name: export(manager, name),
        }
        rows = [_row(what, _big_vs_small(pairs, m)) for what, m in measures.items()]
        wide = interleaved(pairs, lambda: measures[DIFF]("wide"), lambda: measures[DIFF]("small"))
        rows.append(ratio_row(f"{DIFF}, 64 GiB spread vs 1", *wide, "ms", "none"))
    finally:
        manager.close()  # the commands need the pool
    measures = {
        "evs snapshot diff --from": lambda name: run_timed(
            evs("snapshot", "diff", f"{name}-s2", "--from", f"{name}-s1"), env
        )[0],
        "evs snapshot export --from": export_command,
    }
    rows += [_row(what, _big_vs_small(pairs, m)) for what, m in measures.items()]
    return rows, diff


def _row(what: str, times: tuple[list[float], list[float]]) -> str:
    return ratio_row(f"{what}, 64 vs 1 GiB", *times, "ms", "<= 1.2")


def main(argv: list[str] | None = None) -> None:
    """Run the diff benchmark and print its rows."""
    args = bench_args(__doc__.splitlines()[0], 5, argv)
    workdir = tempfile.mkdtemp(prefix="evs-diff-bench-", dir=args.dir)
    try:
        load_before = os.getloadavg()
        rows, diff = _rows(args.pairs, workdir, evs_env(workdir))
        load_after = os.getloadavg()
        print(
            f"the same changes on both: {diff['extent_count']} extents, "
            f"{diff['data_bytes'] // KiB} KiB of data, {diff['zero_bytes'] // KiB} KiB discarded"
        )
        print_table("64 GiB", "1 GiB", rows, args.pairs, (load_before, load_after))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
