"""Benchmarks of the local ROW engine against fair anchors measured in the same run.

Run: ``tox -e bench`` or ``python -m bench.engine_bench [--quick] [--pairs N] [--dir DIR]``.
Each timed row runs ours and its anchor in interleaved pairs (A B A B ...) after a warm-up
of each and prints both medians, the ratio of the medians (a time: lower is better), the
goal and both spreads; the table ends with the machine's load before and after.
"""

import os
import random
import shutil
import tempfile
import time

from bench.helpers import bench_args, interleaved, print_table, ratio_row
from evs_driver.rowstore import Pool

MiB, GiB = 1 << 20, 1 << 30
CHUNK = 64 * 1024
BLOCK = 4096


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _fill(pool: Pool, name: str, size: int, byte: int = 0x5A) -> None:
    block = bytes([byte]) * MiB
    for offset in range(0, size, MiB):
        pool.write(name, offset, block)
    pool.flush()


def bench_latency(root: str, big: int, pairs: int, rows: list) -> None:
    """Snapshot, create-from-snapshot and revert: a volume with ``big`` written against one
    with 16 MiB written, each operation timed on both in turn."""
    with Pool.create(f"{root}/lat", 2 * big + GiB) as pool:
        pool.create_volume("small", big)
        pool.create_volume("big", big)
        _fill(pool, "small", 16 * MiB)
        _fill(pool, "big", big)
        serial = iter(range(1_000_000))

        def cost(operation: str, name: str):
            def run() -> float:
                n = next(serial)
                pool.write(name, n % 256 * CHUNK, b"x" * BLOCK)  # something to snapshot
                snapshot = f"{name}-s{n}"
                took = _timed(lambda: pool.create_snapshot(name, snapshot))
                if operation == "create-from-snapshot":
                    took = _timed(lambda: pool.clone(snapshot, f"{name}-c{n}"))
                elif operation == "revert":
                    took = _timed(lambda: pool.revert(name, snapshot))
                return took

            return run

        for operation in ("snapshot", "create-from-snapshot", "revert"):
            rows.append(
                ratio_row(
                    f"{operation}, {big // GiB} GiB vs 16 MiB written",
                    *interleaved(pairs, cost(operation, "big"), cost(operation, "small")),
                    "ms",
                    "<= 1.2",
                )
            )


def bench_sequential(root: str, size: int, pairs: int, rows: list) -> None:
    """1 MiB writes (then one flush) and reads of a volume against the same on a raw file:
    both overwrite what the warm-up wrote, both read the page cache into a reused buffer."""
    block = os.urandom(MiB)
    buf = bytearray(MiB)
    fd = os.open(f"{root}/raw.img", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # as the engine does its data file
        with Pool.create(f"{root}/seq", size + GiB) as pool:
            pool.create_volume("v", size)
            offsets = range(0, size, MiB)

            def ours_write() -> float:
                return _timed(lambda: [pool.write("v", o, block) for o in offsets] + [pool.flush()])

            def raw_write() -> float:
                return _timed(
                    lambda: [os.pwrite(fd, block, o) for o in offsets] + [os.fdatasync(fd)]
                )

            def ours_read() -> float:
                return _timed(lambda: [pool.readinto("v", o, buf) for o in offsets])

            def raw_read() -> float:
                return _timed(lambda: [os.preadv(fd, [buf], o) for o in offsets])

            what = f"{size // MiB} MiB in 1 MiB"
            rows.append(
                ratio_row(
                    f"sequential write {what} vs raw file",
                    *interleaved(pairs, ours_write, raw_write),
                    "ms",
                    "<= 1.25",
                )
            )
            rows.append(
                ratio_row(
                    f"sequential read {what} vs raw file",
                    *interleaved(pairs, ours_read, raw_read),
                    "ms",
                    "<= 1.25",
                )
            )
    finally:
        os.close(fd)


def bench_write_after_snapshot(root: str, size: int, count: int, rounds: int, rows: list) -> None:
    """``count`` 4 KiB writes into chunks a snapshot just shared, against the same writes
    into a volume with no snapshot (plain overwrites); each pair is a round that takes a
    new snapshot first, so later rounds also write into overlays a snapshot shares."""
    rng = random.Random(7)
    chunks = size // CHUNK
    data = os.urandom(BLOCK)
    serial = iter(range(1_000_000))
    with Pool.create(f"{root}/ras", 4 * size) as pool:
        for name in ("shared", "plain"):
            pool.create_volume(name, size)
            _fill(pool, name, size)

        def writes(name: str):
            def run() -> float:
                if name == "shared":
                    pool.create_snapshot(name, f"s{next(serial)}")
                picks = rng.sample(range(chunks), count)
                offsets = [c * CHUNK + rng.randrange(CHUNK // BLOCK) * BLOCK for c in picks]
                return _timed(lambda: [pool.write(name, o, data) for o in offsets])

            return run

        rows.append(
            ratio_row(
                f"{count} 4 KiB writes after a snapshot vs none, {rounds} rounds",
                *interleaved(rounds, writes("shared"), writes("plain")),
                "ms",
                "<= 1.43",  # the issue's >= 0.7 of the IOPS
            )
        )


def bench_reads_with_snapshots(
    root: str, size: int, snapshots: int, count: int, pairs: int, rows: list
) -> None:
    """Random 4 KiB reads of a volume with ``snapshots`` snapshots (each after a write)
    against the same reads of a volume with the same data and none."""
    rng = random.Random(11)
    with Pool.create(f"{root}/rds", 4 * size) as pool:
        for name in ("snapped", "plain"):
            pool.create_volume(name, size)
            _fill(pool, name, size)
        for n in range(snapshots):
            offset = rng.randrange(size // BLOCK) * BLOCK
            for name in ("snapped", "plain"):
                pool.write(name, offset, b"y" * BLOCK)
            pool.create_snapshot("snapped", f"s{n}")
        pool.flush()
        offsets = [rng.randrange(size // BLOCK) * BLOCK for _ in range(count)]
        buf = bytearray(BLOCK)

        def reads(name: str):
            return lambda: _timed(lambda: [pool.readinto(name, o, buf) for o in offsets])

        rows.append(
            ratio_row(
                f"{count} 4 KiB random reads, {snapshots} snapshots vs none",
                *interleaved(pairs, reads("snapped"), reads("plain")),
                "ms",
                "<= 1.1",
            )
        )


def bench_space(root: str, size: int, rounds: int, rows: list) -> None:
    """Space (not time): a volume snapshotted ``rounds`` times, each round overwriting 1%."""
    rng = random.Random(13)
    chunks = size // CHUNK
    per_round = chunks // 100
    with Pool.create(f"{root}/space", 3 * size) as pool:
        pool.create_volume("v", size)
        _fill(pool, "v", size)
        block = os.urandom(CHUNK)
        for n in range(rounds):
            pool.create_snapshot("v", f"s{n}")
            for chunk in rng.sample(range(chunks), per_round):
                pool.write("v", chunk * CHUNK, block)
        pool.flush()
        usage = pool.usage()
    distinct = size + rounds * per_round * CHUNK
    used, meta = usage.used_bytes / MiB, usage.metadata_bytes / MiB
    rows.append(
        f"{'space after ' + str(rounds) + ' snapshots, 1% each':<44} {used:8.0f} MiB"
        f" {distinct / MiB:8.0f} MiB {used * MiB / distinct:6.2f}  <= 1.02   (used / distinct data)"
    )
    rows.append(
        f"{'  metadata':<44} {meta:8.1f} MiB {distinct / MiB:8.0f} MiB"
        f" {meta * MiB / distinct:6.3f}  < 0.01"
    )


def main(argv=None) -> None:
    """Run every engine benchmark and print one table."""
    args = bench_args(__doc__.splitlines()[0], 5, argv, quick="small sizes (a smoke run)")
    quick = args.quick
    root = tempfile.mkdtemp(prefix="evs-bench-", dir=args.dir or ".")
    rows: list = []
    try:
        load_before = os.getloadavg()
        size = (256 * MiB) if quick else GiB
        bench_latency(root, (1 if quick else 4) * GiB, args.pairs, rows)
        bench_sequential(root, size, args.pairs, rows)
        bench_write_after_snapshot(root, size, 500 if quick else 2000, max(args.pairs, 10), rows)
        bench_reads_with_snapshots(
            root, 256 * MiB, 100 if quick else 1000, 5000 if quick else 20000, args.pairs, rows
        )
        bench_space(root, size, 100, rows)
        print_table("ours", "anchor", rows, args.pairs, (load_before, os.getloadavg()))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
