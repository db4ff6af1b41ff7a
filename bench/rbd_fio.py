"""fio through our NBD export of an rbd volume against fio's own ``rbd`` engine, same image.

Part of ``bench.rbd_bench``. The volume lives in the pool's default namespace (fio 3.33's
rbd engine has no namespace option) and is filled first, so reads read data. Each pair
runs a workload on NBD (our server over ``RbdBackend.open_device``), then on fio's rbd
engine (librbd in fio's process), iodepth 32 both; both are librbd underneath, so the
ratio is what our NBD path costs.
"""

import json
import os
import statistics
import subprocess
import tempfile
import uuid

from evs_driver.backends.rbd import naming
from evs_driver.nbd import NBDServer

MiB = 1 << 20
WORKLOADS = [
    ("rand write 4k", "randwrite", "4k"),
    ("rand read 4k", "randread", "4k"),
    ("seq write 1M", "write", "1M"),
    ("seq read 1M", "read", "1M"),
]
WAYS = ("our NBD", "fio rbd")


def _fio(engine_args: list[str], rw: str, bs: str, size: int, runtime: int, env=None):
    """One fio job; (IOPS, MB/s)."""
    cmd = ["fio", "--name=bench", *engine_args, f"--rw={rw}", f"--bs={bs}", "--iodepth=32",
           f"--size={size}", f"--runtime={runtime}", "--time_based", "--ramp_time=1",
           "--randrepeat=0", "--output-format=json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    return side["iops"], side["bw_bytes"] / 1e6


def measure(backend, admin_conf: str, size: int, runtime: int, pairs: int) -> dict:
    """{(workload, way): [(IOPS, MB/s)...]}, the ways interleaved A B A B."""
    vol = str(uuid.uuid4())
    backend.create_volume(vol, size)
    name = naming.volume(vol)
    subprocess.run(
        ["rbd", "-c", admin_conf, "bench", "--io-type", "write", "--io-size", "4M",
         "--io-pattern", "seq", "--io-total", str(size), backend.cluster.spec(name)],
        check=True, capture_output=True,
    )  # fmt: skip
    rbd_args = ["--ioengine=rbd", "--clientname=admin", f"--pool={backend.cluster.pool}",
                f"--rbdname={name}"]  # fmt: skip
    env = dict(os.environ, CEPH_CONF=admin_conf)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="evs-rbd-bench-") as root:
        nbd = NBDServer()
        nbd.listen_unix(os.path.join(root, "nbd.sock"))
        nbd.add_export("vol", lambda: backend.open_device(vol, writable=True))
        nbd_args = ["--ioengine=nbd", f"--uri={nbd.uri('vol')}"]
        try:
            for _ in range(pairs):
                for label, rw, bs in WORKLOADS:
                    for way, args, extra in (
                        ("our NBD", nbd_args, None),
                        ("fio rbd", rbd_args, env),
                    ):
                        result = _fio(args, rw, bs, size, runtime, extra)
                        results.setdefault((label, way), []).append(result)
        finally:
            nbd.close()
    backend.delete_volume(vol)
    return results


def table(results: dict) -> list[str]:
    """Rows: median IOPS and MB/s (min-max) per way, and our/fio-rbd ratio."""
    rows = ["| workload | our NBD: IOPS (min-max) | fio rbd: IOPS (min-max) | MB/s ours / fio rbd | ratio |",
            "|---|---|---|---|---|"]  # fmt: skip
    for label, _, _ in WORKLOADS:
        ours, theirs = results[(label, "our NBD")], results[(label, "fio rbd")]
        mine, other = statistics.median(i for i, _ in ours), statistics.median(i for i, _ in theirs)
        rows.append(
            f"| {label} | {_cell([i for i, _ in ours])} | {_cell([i for i, _ in theirs])} | "
            f"{statistics.median(m for _, m in ours):.1f} / {statistics.median(m for _, m in theirs):.1f} | "
            f"{mine / other:.2f} |"
        )
    return rows


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
