"""Benchmarks of the local ROW engine against plain-file anchors, measured in one run.

Run: ``tox -e bench`` or ``python -m bench.engine_bench [--quick] [--dir DIR]``.
Prints each figure with its anchor and the ratio the issue sets a goal for.
"""

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

from evs_driver.rowstore import Pool

MiB, GiB = 1 << 20, 1 << 30
CHUNK = 64 * 1024


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _fill(pool: Pool, name: str, size: int, byte: int = 0x5A) -> None:
    block = bytes([byte]) * MiB
    for offset in range(0, size, MiB):
        pool.write(name, offset, block)
    pool.flush()


def _latencies(pool: Pool, name: str, rounds: int) -> dict[str, float]:
    """Median seconds of snapshot, create-from-snapshot and revert on volume ``name``."""
    snap, clone, revert = [], [], []
    for n in range(rounds):
        pool.write(name, n * CHUNK, b"x" * 4096)
        snap.append(_timed(lambda n=n: pool.create_snapshot(name, f"{name}-s{n}")))
        clone.append(_timed(lambda n=n: pool.clone(f"{name}-s{n}", f"{name}-c{n}")))
        revert.append(_timed(lambda n=n: pool.revert(name, f"{name}-s{n}")))
    return {
        k: statistics.median(v)
        for k, v in (("snapshot", snap), ("create-from-snapshot", clone), ("revert", revert))
    }


def bench_latency(root: str, big: int, rounds: int, rows: list) -> None:
    with Pool.create(f"{root}/lat", 2 * big + GiB) as pool:
        pool.create_volume("small", big)
        pool.create_volume("big", big)
        _fill(pool, "small", 16 * MiB)
        _fill(pool, "big", big)
        small = _latencies(pool, "small", rounds)
        large = _latencies(pool, "big", rounds)
    for what in small:
        rows.append(
            (
                f"{what} latency, {big // GiB} GiB vs 16 MiB written",
                f"{large[what] * 1e3:.2f} ms",
                f"{small[what] * 1e3:.2f} ms",
                large[what] / small[what],
                "<= 1.2 (and < 5 ms)",
            )
        )


def bench_sequential(root: str, size: int, rows: list) -> None:
    block = os.urandom(MiB)
    raw_path = f"{root}/raw.img"
    fd = os.open(raw_path, os.O_RDWR | os.O_CREAT, 0o600)
    raw_write = _timed(
        lambda: [os.pwrite(fd, block, o) for o in range(0, size, MiB)] + [os.fdatasync(fd)]
    )
    raw_read = _timed(lambda: [os.pread(fd, MiB, o) for o in range(0, size, MiB)])
    os.close(fd)
    os.unlink(raw_path)
    with Pool.create(f"{root}/seq", size + GiB) as pool:
        pool.create_volume("v", size)
        ours_write = _timed(
            lambda: [pool.write("v", o, block) for o in range(0, size, MiB)] + [pool.flush()]
        )
        buf = bytearray(MiB)
        ours_read = _timed(lambda: [pool.readinto("v", o, buf) for o in range(0, size, MiB)])
    mbps = lambda t: f"{size / t / 1e6:,.0f} MB/s"  # noqa: E731
    rows.append(
        (
            "sequential 1 MiB write vs os.pwrite",
            mbps(ours_write),
            mbps(raw_write),
            raw_write / ours_write,
            ">= 0.7",
        )
    )
    rows.append(
        (
            "sequential 1 MiB read vs os.pread",
            mbps(ours_read),
            mbps(raw_read),
            raw_read / ours_read,
            ">= 0.7",
        )
    )


def bench_write_after_snapshot(root: str, size: int, count: int, rows: list) -> None:
    rng = random.Random(7)
    chunks = size // CHUNK
    data = os.urandom(4096)
    with Pool.create(f"{root}/ras", 3 * size) as pool:
        pool.create_volume("v", size)
        _fill(pool, "v", size)
        offsets = [c * CHUNK + rng.randrange(16) * 4096 for c in rng.sample(range(chunks), count)]
        before = _timed(lambda: [pool.write("v", o, data) for o in offsets])
        pool.create_snapshot("v", "s")
        offsets = [c * CHUNK + rng.randrange(16) * 4096 for c in rng.sample(range(chunks), count)]
        after = _timed(lambda: [pool.write("v", o, data) for o in offsets])
    iops = lambda t: f"{count / t:,.0f} IOPS"  # noqa: E731
    rows.append(
        (
            "4 KiB random write right after a snapshot vs before",
            iops(after),
            iops(before),
            before / after,
            ">= 0.5",
        )
    )


def bench_reads_with_snapshots(root: str, size: int, snapshots: int, count: int, rows: list):
    rng = random.Random(11)
    with Pool.create(f"{root}/rds", 4 * size) as pool:
        pool.create_volume("v", size)
        _fill(pool, "v", size)
        offsets = [rng.randrange(size // 4096) * 4096 for _ in range(count)]
        buf = bytearray(4096)

        def median_pass() -> float:
            """One untimed warm-up pass, then the median of three timed ones."""
            pool.flush()
            passes = [
                _timed(lambda: [pool.readinto("v", o, buf) for o in offsets]) for _ in range(4)
            ]
            return statistics.median(passes[1:])

        none = median_pass()
        for n in range(snapshots):
            pool.write("v", rng.randrange(size // 4096) * 4096, b"y" * 4096)
            pool.create_snapshot("v", f"s{n}")
        many = median_pass()
    iops = lambda t: f"{count / t:,.0f} IOPS"  # noqa: E731
    rows.append(
        (
            f"4 KiB random read with {snapshots} snapshots vs none",
            iops(many),
            iops(none),
            none / many,
            ">= 0.9",
        )
    )


def bench_space(root: str, size: int, rounds: int, rows: list) -> None:
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
    rows.append(
        (
            f"pool space after {rounds} snapshots each overwriting 1%",
            f"{usage.used_bytes / MiB:,.0f} MiB",
            f"{distinct / MiB:,.0f} MiB distinct",
            usage.used_bytes / distinct,
            "<= 1.02",
        )
    )
    rows.append(
        (
            "  metadata as a share of the data",
            f"{usage.metadata_bytes / MiB:.1f} MiB",
            f"{distinct / MiB:,.0f} MiB",
            usage.metadata_bytes / distinct,
            "< 0.01",
        )
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--dir", help="where to put the pools (default: a temp dir in .)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="evs-bench-", dir=args.dir or ".")
    quick = args.quick
    rows: list = []
    try:
        bench_latency(root, (1 if quick else 4) * GiB, 10 if quick else 30, rows)
        bench_sequential(root, (256 * MiB) if quick else GiB, rows)
        bench_write_after_snapshot(
            root, (256 * MiB) if quick else GiB, 2000 if quick else 10000, rows
        )
        bench_reads_with_snapshots(
            root, 256 * MiB, 100 if quick else 1000, 5000 if quick else 20000, rows
        )
        bench_space(root, (256 * MiB) if quick else GiB, 100, rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'benchmark':58} {'ours':>16} {'anchor':>20} {'ratio':>7}  goal")
    for name, ours, anchor, ratio, goal in rows:
        print(f"{name:58} {ours:>16} {anchor:>20} {ratio:7.2f}  {goal}")


if __name__ == "__main__":
    main()
