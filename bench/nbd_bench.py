"""NBD server benchmark: our server against qemu-nbd, with fio's nbd engine, in one run.

Run: ``python -m bench.nbd_bench [--size 1G] [--runtime 5] [--dir DIR]``. Serves the same
content three ways (our server on a raw file, our server on a rowstore volume, qemu-nbd on
a qcow2) and runs sequential 1 MiB and random 4 KiB reads and writes at iodepth 32
against each, then prints IOPS, MB/s and our/qemu ratios.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

from bench._nbd_pooldev import PoolDevice
from evs_driver.nbd import FileDevice, NBDServer
from evs_driver.rowstore import Pool

MiB = 1 << 20
WORKLOADS = [  # (label, fio rw, block size)
    ("seq read 1M", "read", "1M"),
    ("seq write 1M", "write", "1M"),
    ("rand read 4k", "randread", "4k"),
    ("rand write 4k", "randwrite", "4k"),
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


def _fill_pool(pool: Pool, name: str, raw: str, size: int) -> None:
    pool.create_volume(name, size)
    with open(raw, "rb") as f:
        for offset in range(0, size, MiB):
            pool.write(name, offset, f.read(MiB))
    pool.flush()


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


def _start_qemu_nbd(qcow2: str, sock: str, cache: str) -> subprocess.Popen:
    aio = ["--aio=native"] if cache == "none" else []
    cmd = [
        "qemu-nbd",
        "-f",
        "qcow2",
        f"--cache={cache}",
        *aio,
        "--persistent",
        "--shared=16",
        "--discard=unmap",
        "-x",
        "qemu",
        "-k",
        sock,
        qcow2,
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if os.path.exists(sock):
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"qemu-nbd failed: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("qemu-nbd did not create its socket")


def _fio(uri: str, rw: str, bs: str, size: int, runtime: int) -> tuple[float, float]:
    """Run one fio job; return (IOPS, MB/s)."""
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
        "--ramp_time=1",
        "--randrepeat=0",
        "--output-format=json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    return side["iops"], side["bw_bytes"] / 1e6


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
        choices=["file", "rowstore", "qemu"],
        action="append",
        help="serve only these (repeatable)",
    )
    args = parser.parse_args(argv)
    for tool in ("fio", "qemu-nbd", "qemu-img"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install fio qemu-utils")
    size = _parse_size(args.size)
    root = tempfile.mkdtemp(prefix="nbdbench-", dir=args.dir or "/tmp")
    try:
        _run(root, size, args.runtime, args.only or ["file", "rowstore", "qemu"], args.qemu_cache)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: str, size: int, runtime: int, servers: list[str], qemu_cache: str) -> None:
    raw = os.path.join(root, "disk.raw")
    _make_content(raw, size)
    uris = {}
    nbd = NBDServer()
    nbd.listen_unix(os.path.join(root, "evs.sock"))
    pool = qemu = None
    try:
        if "file" in servers:
            nbd.add_export("file", lambda: FileDevice(raw))
            uris["evs file"] = nbd.uri("file")
        if "rowstore" in servers:
            pool = Pool.create(os.path.join(root, "pool"), capacity=size + 256 * MiB)
            _fill_pool(pool, "vol", raw, size)
            nbd.add_export("vol", lambda: PoolDevice(pool, "vol"))
            uris["evs rowstore"] = nbd.uri("vol")
        note = "no qemu-nbd"
        if "qemu" in servers:
            qcow2 = os.path.join(root, "disk.qcow2")
            convert = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2]
            subprocess.run(convert, check=True)
            cache = qemu_cache
            if cache == "auto":
                cache = "none" if _direct_io_works(root) else "writeback"
            qsock = os.path.join(root, "qemu.sock")
            qemu = _start_qemu_nbd(qcow2, qsock, cache)
            uris["qemu-nbd"] = f"nbd+unix:///qemu?socket={qsock}"
            note = f"qemu-nbd --cache={cache}" + (" --aio=native" if cache == "none" else "")
            if qemu_cache == "auto" and cache != "none":
                note += " (O_DIRECT refused on this file system)"
        print(f"image {size // MiB} MiB in {root}; {runtime} s per run, iodepth 32; {note}")
        print("evs devices use the page cache (no O_DIRECT); flushes reach the disk")
        results = {}
        for label, rw, bs in WORKLOADS:
            for name, uri in uris.items():
                results[label, name] = _fio(uri, rw, bs, size, runtime)
        _print_table(results, list(uris))
    finally:
        nbd.close()
        if pool is not None:
            pool.close()
        if qemu is not None:
            qemu.terminate()
            qemu.wait(30)


def _print_table(results: dict, names: list[str]) -> None:
    print(f"{'workload':<15} {'server':<13} {'IOPS':>10} {'MB/s':>9} {'vs qemu':>8}")
    for label, _rw, _bs in WORKLOADS:
        base = results.get((label, "qemu-nbd"))
        for name in names:
            iops, mbs = results[label, name]
            ratio = f"{iops / base[0]:.2f}" if base and name != "qemu-nbd" else ""
            print(f"{label:<15} {name:<13} {iops:>10.0f} {mbs:>9.1f} {ratio:>8}")


if __name__ == "__main__":
    main()
