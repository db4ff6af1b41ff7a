"""NBD server benchmark: our server against qemu-nbd, with fio's nbd engine, in one run.

Run: ``python -m bench.nbd_bench [--size 1G] [--runtime 5] [--dir DIR] [--only snapshots]``;
``--only nbdkit`` runs the flush and multi-connection rows against nbdkit (see ``nbdkit_rows``).
Serves the same content three ways (our server on a raw file, our server on a rowstore volume,
qemu-nbd on a qcow2) and runs sequential 1 MiB and random 4 KiB reads and writes at iodepth 32
against each. Then it compares a pool volume with a qcow2 after 100 snapshots (internal qcow2
snapshots) and after 50 snapshots with writes between them (a 50-deep chain of qcow2 overlays).
It prints IOPS, MB/s and our/qemu ratios.

``--only rounds`` (only on request: 20 fio runs, over 2 minutes at the default runtime, and
deleting its pool's data file took another minute here) is issue 13's row: 4 KiB random
writes right after each of 10 snapshots of one pool volume, interleaved with the same writes
to a volume that never gets a snapshot; goal >= 0.7 of its IOPS in each round.
"""

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator

from bench import nbdkit_rows
from bench.helpers import interleaved, median_spread, print_table, wait_for_socket
from evs_driver.filedev import FileDevice
from evs_driver.nbd import NBDServer
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice

MiB = 1 << 20
CLUSTER = 64 << 10  # qcow2's default cluster and the pool's default chunk
SNAPSHOTS = 100
CHAIN = 50
ROUNDS = 10  # issue 13's snapshot-then-write rounds
SERVERS = ["file", "rowstore", "qemu"]
# (label, fio rw, block size, ramp seconds); writes after snapshots get no ramp, so they time
# the first seconds of writes, when most of them still copy or redirect a whole 64 KiB cluster.
WORKLOADS = [
    ("seq read 1M", "read", "1M", 1),
    ("seq write 1M", "write", "1M", 1),
    ("rand read 4k", "randread", "4k", 1),
    ("rand write 4k", "randwrite", "4k", 1),
]
SNAPSHOT_WORKLOADS = [
    (f"{SNAPSHOTS} snaps: rand write 4k", "randwrite", "4k", 0),
    (f"{SNAPSHOTS} snaps: rand read 4k", "randread", "4k", 1),
]
CHAIN_WORKLOADS = [
    (f"{CHAIN}-deep chain: rand read 4k", "randread", "4k", 1),
    (f"{CHAIN}-deep chain: rand write 4k", "randwrite", "4k", 0),
]


def _parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def _make_content(path: str, size: int) -> None:
    """A raw image of incompressible data, so no server can skip work on zeros."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for offset in range(0, size, MiB):
            f.write(block[: min(MiB, size - offset)])
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def _filled_pool(
    path: str, raw: str, size: int, capacity: int, volumes: tuple[str, ...] = ("vol",)
) -> Iterator[Pool]:
    """A new pool holding ``volumes``, each with the raw image's content; closed on exit."""
    pool = Pool.create(path, capacity=capacity)
    try:
        for volume in volumes:
            pool.create_volume(volume, size)
            with open(raw, "rb") as f:
                for offset in range(0, size, MiB):
                    pool.write(volume, offset, f.read(MiB))
        pool.flush()
        yield pool
    finally:
        pool.close()


@contextlib.contextmanager
def _exported(nbd: NBDServer, name: str, pool: Pool, volume: str = "vol") -> Iterator[str]:
    """Serve the pool's ``volume`` as export ``name``; yield its URI."""
    nbd.add_export(name, lambda: PoolDevice(pool, volume))
    try:
        yield nbd.uri(name)
    finally:
        nbd.remove_export(name)


def _qcow2(raw: str, path: str) -> str:
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, path], check=True)
    return path


def _direct_io_works(directory: str) -> bool:
    """True when the file system accepts O_DIRECT (tmpfs and some overlays do not)."""
    probe = os.path.join(directory, "odirect-probe")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_RDWR | os.O_DIRECT)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


@contextlib.contextmanager
def qemu_nbd(image: str, sock: str, cache: str, fmt: str = "qcow2") -> Iterator[str]:
    """Serve ``image`` (a qcow2: the top of its chain) with qemu-nbd; yield its URI."""
    aio = ["--aio=native"] if cache == "none" else []
    cmd = ["qemu-nbd", "-f", fmt, f"--cache={cache}", *aio, "--persistent", "--shared=16"]
    cmd += ["--discard=unmap", "-x", "qemu", "-k", sock, image]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_socket(proc, sock, "qemu-nbd")
        yield f"nbd+unix:///qemu?socket={sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # a SIGTERM while it opens the image can go unheard
            proc.kill()
            proc.wait()


def _fio(
    uri: str, rw: str, bs: str, size: int, runtime: int, ramp: int, extra: list[str] = ()
) -> tuple[float, float]:
    """Run one fio job (``extra``: more fio options); return (IOPS, MB/s)."""
    cmd = [
        "fio",
        "--name=bench",
        "--ioengine=nbd",
        f"--uri={uri}",
        f"--rw={rw}",
        f"--bs={bs}",
        "--iodepth=32",
        f"--size={size}",
        f"--runtime={runtime}",
        "--time_based",
        f"--ramp_time={ramp}",
        "--randrepeat=0",
        "--output-format=json",
        *extra,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    return side["iops"], side["bw_bytes"] / 1e6


def _measure(uris: dict[str, str], workloads: list, size: int, runtime: int) -> dict:
    """Run each workload against each server, in that order; key results by (label, server)."""
    return {
        (label, name): _fio(uri, rw, bs, size, runtime, ramp)
        for label, rw, bs, ramp in workloads
        for name, uri in uris.items()
    }


def main(argv=None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="image size (default 1G)")
    parser.add_argument("--runtime", type=int, default=5, help="seconds per fio run")
    parser.add_argument("--dir", help="work directory on the file system to test (default /tmp)")
    parser.add_argument(
        "--qemu-cache",
        choices=["auto", "none", "writeback"],
        default="auto",
        help="qemu-nbd cache mode; auto: none (O_DIRECT, --aio=native) where the FS allows it",
    )
    parser.add_argument(
        "--only",
        choices=[*SERVERS, "snapshots", "nbdkit", "rounds"],
        action="append",
        help="run only these (repeatable): the plain rows of a server, or the rows after "
        f"{SNAPSHOTS} snapshots and along a {CHAIN}-deep chain (pool volume against qcow2), "
        "or the flush and 4-connection rows against nbdkit; or (only on request) rounds: "
        f"writes after each of {ROUNDS} snapshots against a volume with none",
    )
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs for nbdkit rows")
    args = parser.parse_args(argv)
    for tool in ("fio", "qemu-nbd", "qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install fio qemu-utils")
    size = _parse_size(args.size)
    root = tempfile.mkdtemp(prefix="nbdbench-", dir=args.dir or "/tmp")
    try:
        only = args.only or [*SERVERS, "snapshots", "nbdkit"]
        _run(root, size, args.runtime, only, args.qemu_cache, args.pairs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: str, size: int, runtime: int, only: list[str], qemu_cache: str, pairs: int) -> None:
    raw = os.path.join(root, "disk.raw")
    _make_content(raw, size)
    cache = qemu_cache
    if cache == "auto":
        cache = "none" if _direct_io_works(root) else "writeback"
    note = f"qemu-nbd --cache={cache}" + (" --aio=native" if cache == "none" else "")
    if qemu_cache == "auto" and cache != "none":
        note += " (O_DIRECT refused on this file system)"
    print(f"image {size // MiB} MiB in {root}; {runtime} s per run, iodepth 32; {note}")
    print("evs devices use the page cache (no O_DIRECT); flushes reach the disk")
    nbd = NBDServer()
    nbd.listen_unix(os.path.join(root, "evs.sock"))
    results = {}
    try:
        servers = [server for server in SERVERS if server in only]
        if servers:
            results |= _plain_rows(nbd, root, raw, size, runtime, servers, cache)
        if "snapshots" in only:
            print(f"writes after snapshots: the first {runtime} s, no ramp")
            results |= _snapshot_rows(nbd, root, raw, size, runtime, cache)
            results |= _chain_rows(nbd, root, raw, size, runtime, cache)
        if "nbdkit" in only:
            with _filled_pool(os.path.join(root, "kit-pool"), raw, size, size + 256 * MiB) as pool:
                lines = nbdkit_rows.measure(nbd, pool, raw, root, size, runtime, pairs, _fio)
        if "rounds" in only:
            rounds, loads = _rounds_rows(nbd, root, raw, size, runtime)
    finally:
        nbd.close()
    if results:
        _print_table(results)
    if "rounds" in only:
        print(f"IOPS of 4 KiB random writes, {runtime} s each with no ramp, right after a snapshot")
        print_table("snapshotted", "no snapshot", rounds, ROUNDS, loads)
    if "nbdkit" in only:
        print("\n".join(lines))


def _plain_rows(
    nbd: NBDServer, root: str, raw: str, size: int, runtime: int, servers: list[str], cache: str
) -> dict:
    """The four workloads on a raw file, a filled pool volume and a qcow2."""
    with contextlib.ExitStack() as stack:
        uris = {}
        if "file" in servers:
            nbd.add_export("file", lambda: FileDevice(raw))
            stack.callback(nbd.remove_export, "file")
            uris["evs file"] = nbd.uri("file")
        if "rowstore" in servers:
            pool = stack.enter_context(
                _filled_pool(os.path.join(root, "pool"), raw, size, size + 256 * MiB)
            )
            uris["evs rowstore"] = stack.enter_context(_exported(nbd, "vol", pool))
        if "qemu" in servers:
            qcow2 = _qcow2(raw, os.path.join(root, "disk.qcow2"))
            sock = os.path.join(root, "qemu.sock")
            uris["qemu-nbd"] = stack.enter_context(qemu_nbd(qcow2, sock, cache))
        return _measure(uris, WORKLOADS, size, runtime)


def _snapshot_rows(
    nbd: NBDServer, root: str, raw: str, size: int, runtime: int, cache: str
) -> dict:
    """Random writes right after 100 snapshots, then random reads: pool volume against qcow2."""
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(
            _filled_pool(os.path.join(root, "snap-pool"), raw, size, 3 * size)
        )
        qcow2 = _qcow2(raw, os.path.join(root, "snap.qcow2"))
        for i in range(SNAPSHOTS):
            pool.create_snapshot("vol", f"s{i}")
            subprocess.run(["qemu-img", "snapshot", "-c", f"s{i}", qcow2], check=True)
        uris = {
            "evs rowstore": stack.enter_context(_exported(nbd, "snap", pool)),
            "qemu-nbd": stack.enter_context(
                qemu_nbd(qcow2, os.path.join(root, "snap.sock"), cache)
            ),
        }
        return _measure(uris, SNAPSHOT_WORKLOADS, size, runtime)


def _chain_rows(nbd: NBDServer, root: str, raw: str, size: int, runtime: int, cache: str) -> dict:
    """Random reads, then writes, after 50 snapshots (ours) or overlays (qcow2).

    Between snapshots both get the same writes: 1% of the image in whole 64 KiB clusters at
    random places, so most qcow2 reads walk the chain down to its base.
    """
    clusters = size // CLUSTER
    rng = random.Random(4)
    layers = [sorted(rng.sample(range(clusters), max(1, clusters // 100))) for _ in range(CHAIN)]
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(
            _filled_pool(os.path.join(root, "chain-pool"), raw, size, 3 * size)
        )
        top = _qcow2(raw, os.path.join(root, "chain-0.qcow2"))
        for depth, layer in enumerate(layers, 1):
            pool.create_snapshot("vol", f"c{depth}")
            for cluster in layer:
                pool.write("vol", cluster * CLUSTER, bytes([depth]) * CLUSTER)
            below, top = top, os.path.join(root, f"chain-{depth}.qcow2")
            create = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", below, "-F", "qcow2", top]
            subprocess.run(create, check=True)
            writes = [f"write -P {depth} {cluster * CLUSTER} {CLUSTER}" for cluster in layer]
            io = ["qemu-io", "-f", "qcow2", *(arg for w in writes for arg in ("-c", w)), top]
            subprocess.run(io, check=True, stdout=subprocess.DEVNULL)
        pool.flush()
        uris = {
            "evs rowstore": stack.enter_context(_exported(nbd, "chain", pool)),
            "qemu-nbd": stack.enter_context(qemu_nbd(top, os.path.join(root, "chain.sock"), cache)),
        }
        return _measure(uris, CHAIN_WORKLOADS, size, runtime)


def _rounds_rows(
    nbd: NBDServer, root: str, raw: str, size: int, runtime: int
) -> tuple[list[str], tuple]:
    """Issue 13's row: in each of ROUNDS interleaved pairs, snapshot volume ``shared`` and
    time random writes into it, then the same writes into ``plain``, which has no snapshot.

    fio draws fresh offsets each run, so later rounds also write into overlays that an
    earlier round made and a later snapshot shares. Returns the rows and the load before
    and after.
    """
    loads = os.getloadavg()
    serial = iter(range(ROUNDS))
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(
            _filled_pool(
                os.path.join(root, "rounds-pool"),
                raw,
                size,
                (2 + ROUNDS) * size,
                ("shared", "plain"),
            )
        )
        shared, plain = (
            stack.enter_context(_exported(nbd, f"rounds-{volume}", pool, volume))
            for volume in ("shared", "plain")
        )

        def write(uri: str) -> float:
            return _fio(uri, "randwrite", "4k", size, runtime, 0)[0]

        def snapshot_then_write() -> float:
            pool.create_snapshot("shared", f"r{next(serial)}")
            return write(shared)

        mine, theirs = interleaved(ROUNDS, snapshot_then_write, lambda: write(plain), warm_up=False)
    ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
    rows = [
        _iops_row(f"round {n}: rand write 4k", a, b, ratio, "")
        for n, (a, b, ratio) in enumerate(zip(mine, theirs, ratios, strict=True), 1)
    ]
    ratio, low, high = median_spread(ratios)
    rows.append(
        _iops_row(
            f"median of {ROUNDS} rounds (ratio of each)",
            statistics.median(mine),
            statistics.median(theirs),
            ratio,
            f">= 0.7    (ratios {low:.2f}-{high:.2f})",
        )
    )
    return rows, (loads, os.getloadavg())


def _iops_row(what: str, ours: float, anchor: float, ratio: float, goal: str) -> str:
    """One row of print_table's columns with IOPS: ours, the anchor, their ratio, the goal."""
    return f"{what:<44} {ours:>11,.0f} {anchor:>11,.0f} {ratio:6.2f}  {goal}"


def _print_table(results: dict) -> None:
    width = max(len(label) for label, _name in results)
    print(f"{'workload':<{width}} {'server':<13} {'IOPS':>10} {'MB/s':>9} {'vs qemu':>8}")
    for (label, name), (iops, mbs) in results.items():
        base = results.get((label, "qemu-nbd"))
        ratio = f"{iops / base[0]:.2f}" if base and name != "qemu-nbd" else ""
        print(f"{label:<{width}} {name:<13} {iops:>10.0f} {mbs:>9.1f} {ratio:>8}")


if __name__ == "__main__":
    main()
