"""Flushes and many connections: a pool volume served by our NBD server against nbdkit's ``file``
plugin (C) on a raw file with the same content, measured in one run, interleaved A B A B.

``python -m bench.nbd_bench --only nbdkit [--pairs N] [--size 256M] [--runtime 3]``. Rows:
- 4 KiB random writes at iodepth 32 with a FLUSH after every 32 writes (fio ``fsync=32``);
- 4 KiB random writes from 4 fio jobs, each on its own connection (iodepth 32 each).
Both servers keep data in the page cache and make it durable on FLUSH (fdatasync).
"""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

from bench.helpers import interleaved, load, median_spread, wait_for_socket
from evs_driver.nbd import NBDServer
from evs_driver.rowstore.blockdevice import PoolDevice

# (label, fio options beyond the common ones, goal)
ROWS = [
    ("4 KiB randwrite QD32 with flushes (fsync=32)", ["--fsync=32"], ">= 1.0"),
    ("4 KiB randwrite, 4 jobs on 4 connections", ["--numjobs=4", "--group_reporting"], ">= 1.0"),
]


def _require_nbdkit() -> None:
    """nbdkit is the anchor; install Debian's package when it is missing."""
    if shutil.which("nbdkit") is None:
        print("nbdkit is missing: apt-get install -y nbdkit")
        subprocess.run(["apt-get", "install", "-y", "nbdkit"], check=True)


@contextlib.contextmanager
def _nbdkit(raw: str, sock: str) -> Iterator[str]:
    """Serve ``raw`` with nbdkit's file plugin on a unix socket; yield its URI."""
    proc = subprocess.Popen(
        ["nbdkit", "--foreground", "--unix", sock, "file", f"file={raw}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_socket(proc, sock, "nbdkit")
        yield f"nbd+unix:///?socket={sock}"
    finally:
        proc.terminate()
        proc.wait(10)


def measure(
    nbd: NBDServer, pool, raw: str, root: str, size: int, runtime: int, pairs: int, fio
) -> list[str]:
    """The rows as printable lines; ``pool`` holds volume ``vol`` with ``raw``'s content."""
    _require_nbdkit()
    load_before = load()
    lines = []
    nbd.add_export("flushvol", lambda: PoolDevice(pool, "vol"))
    try:
        ours = nbd.uri("flushvol")
        with _nbdkit(raw, os.path.join(root, "nbdkit.sock")) as anchor:
            for label, extra, goal in ROWS:

                def run(uri, extra=extra):
                    return fio(uri, "randwrite", "4k", size, runtime, 1, extra)[0]

                mine, theirs = interleaved(
                    pairs, lambda: run(ours), lambda: run(anchor), warm_up=False
                )
                (a, a_low, a_high), (b, b_low, b_high) = median_spread(mine), median_spread(theirs)
                lines.append(
                    f"{label:<46} {a:>9,.0f} {b:>9,.0f} {a / b:6.2f}  {goal}"
                    f"  (spread {a_low:,.0f}-{a_high:,.0f} / {b_low:,.0f}-{b_high:,.0f})"
                )
    finally:
        nbd.remove_export("flushvol")
    header = (
        f"{'IOPS, evs pool volume vs nbdkit file':<46} {'evs':>9} {'nbdkit':>9} {'ratio':>6}  goal"
    )
    footer = (
        f"{pairs} interleaved pairs of {runtime} s, medians; load before {load_before}, "
        f"after {load()}"
    )
    return [header, *lines, footer]
