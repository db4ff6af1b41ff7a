"""Copies of a mostly empty volume read only what it holds: time against size (issue 16).

``python -m bench.sparse_copy_bench [--pairs N] [--dir DIR]``: a 1 GiB and a 64 GiB
volume of one ``local`` pool hold the same 100 MiB (100 pieces of 1 MiB at random places
over each), served by our NBD server; the anchor is ``qemu-nbd`` serving sparse raw files
with the same data (``--cache=writeback``: both read from the page cache). Each round
copies every export with ``nbdcopy URI null:`` and with ``qemu-img convert -O raw``
(to a new sparse file), ours and the anchor's interleaved (A B A B), 1 GiB and 64 GiB in
turn. Rows: 64 GiB against 1 GiB for each server (flat when only the data is read), and
ours against qemu-nbd at 64 GiB. Medians with their spread (min-max), and the load.
"""

import contextlib
import os
import random
import shutil
import subprocess
import tempfile

from bench.helpers import bench_args, interleaved, print_table, ratio_row, run_timed
from bench.nbd_bench import qemu_nbd
from evs_driver.nbd import NBDServer
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice

MiB, GiB = 1 << 20, 1 << 30
SIZES = {"1 GiB": GiB, "64 GiB": 64 * GiB}
PIECES = 100  # of 1 MiB each


def _fill(pool: Pool, name: str, raw: str, size: int) -> None:
    """The same pieces in pool volume ``name`` and in the sparse raw file ``raw``."""
    rng = random.Random(16)
    pool.create_volume(name, size)
    with open(raw, "wb") as image:
        image.truncate(size)
        for slot in rng.sample(range(size // MiB), PIECES):
            piece = rng.randbytes(MiB)
            pool.write(name, slot * MiB, piece)
            image.seek(slot * MiB)
            image.write(piece)
    pool.flush()


def _copiers(workdir: str) -> dict:
    """Each client as a function of a URI that copies the whole export and returns seconds."""
    target = os.path.join(workdir, "copy.raw")

    def convert(uri: str) -> float:
        seconds = run_timed(["qemu-img", "convert", "-O", "raw", uri, target])[0]
        os.unlink(target)
        return seconds

    return {
        "nbdcopy": lambda uri: run_timed(["nbdcopy", uri, "null:"])[0],
        "qemu-img convert": convert,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the sparse copy benchmark and print its rows."""
    args = bench_args(__doc__.splitlines()[0], 3, argv)
    for tool in ("nbdcopy", "qemu-img", "qemu-nbd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install libnbd-bin qemu-utils")
    workdir = tempfile.mkdtemp(prefix="evs-sparse-bench-", dir=args.dir)
    try:
        load_before = os.getloadavg()
        rows = _rows(args.pairs, workdir)
        load_after = os.getloadavg()
        print(f"{PIECES} MiB allocated in each export, {args.pairs} copies of each")
        print_table("A", "B", rows, args.pairs, (load_before, load_after))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _rows(pairs: int, workdir: str) -> list[str]:
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(Pool.create(os.path.join(workdir, "pool"), capacity=2 * GiB))
        nbd = stack.enter_context(NBDServer())
        nbd.listen_unix(os.path.join(workdir, "evs.sock"))
        ours, anchor = {}, {}
        for number, (label, size) in enumerate(SIZES.items()):
            name, raw = f"vol{number}", os.path.join(workdir, f"vol{number}.raw")
            _fill(pool, name, raw, size)
            nbd.add_export(name, lambda name=name: PoolDevice(pool, name, writable=False))
            ours[label] = nbd.uri(name)
            sock = os.path.join(workdir, f"qemu{number}.sock")
            anchor[label] = stack.enter_context(qemu_nbd(raw, sock, "writeback", fmt="raw"))
            # Both serve the same bytes (qemu-img compare also skips what both say is zero).
            subprocess.run(
                ["qemu-img", "compare", "-f", "raw", "-F", "raw", ours[label], raw],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        rows = []
        for client, copy in _copiers(workdir).items():
            # Each round: ours at 1 GiB and at 64 GiB, then qemu-nbd's at both (A B A B).
            mine, theirs = interleaved(
                pairs,
                lambda copy=copy: [copy(ours[label]) for label in SIZES],
                lambda copy=copy: [copy(anchor[label]) for label in SIZES],
            )
            (small_ours, big_ours), (small_qemu, big_qemu) = (
                zip(*mine, strict=True),
                zip(*theirs, strict=True),
            )
            rows += [
                ratio_row(f"{client} via evs, 64 vs 1 GiB", big_ours, small_ours, "ms", "<= 1.2"),
                ratio_row(
                    f"{client} via qemu-nbd, 64 vs 1 GiB", big_qemu, small_qemu, "ms", "anchor"
                ),
                ratio_row(f"{client} at 64 GiB, evs vs qemu-nbd", big_ours, big_qemu, "ms", "none"),
            ]
        return rows


if __name__ == "__main__":
    main()
