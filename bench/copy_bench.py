"""Bulk copies (issue 13): ``evs volume create --full-clone`` of a volume holding N GiB of
written data, against ``qemu-img convert`` of the same data as a raw file, in the same run.

``python -m bench.copy_bench [--gib N] [--pairs N] [--dir DIR]`` imports N GiB of random
data into a volume, then times whole commands in interleaved pairs (A B A B, after one
warm-up of each): our full clone (embedded, durable when it returns) and ``qemu-img
convert -O raw`` of the raw file the volume was imported from (both sources in the page
cache), as it runs by default (its output never synced) and with ``-t writeback`` (synced
once at the end, as ours is). Each copy is deleted after its timing. Prints medians with their spread (min-max) and the load average.
"""

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile

from bench.helpers import bench_args, evs, evs_env, interleaved, print_table, ratio_row, run_timed

BLOCK = 64 << 20


def _quiet(argv: list[str], env: dict | None = None) -> None:
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    """Run the bulk-copy benchmark and print its row."""
    gib = argparse.ArgumentParser(add_help=False)
    gib.add_argument("--gib", type=int, default=4, help="GiB written in the source")
    args = bench_args(__doc__.splitlines()[0], 3, argv, parents=(gib,))
    workdir = tempfile.mkdtemp(prefix="evs-copy-bench-", dir=args.dir)
    try:
        env = evs_env(workdir)
        payload = os.path.join(workdir, "payload.raw")
        with open(payload, "wb") as file:
            for _ in range((args.gib << 30) // BLOCK):
                file.write(os.urandom(BLOCK))
        _quiet(evs("volume", "create", "--size", str(args.gib), "--name", "v"), env)
        _quiet(evs("volume", "import", "v", payload), env)
        load_before = os.getloadavg()
        serial = iter(range(1_000_000))

        def full_clone() -> float:
            name = f"c{next(serial)}"
            clone = ("volume", "create", "--source-volume", "v", "--full-clone", "--name", name)
            wall = run_timed(evs(*clone), env)[0]
            _quiet(evs("volume", "delete", name), env)
            return wall

        def qemu_convert(*options: str) -> float:
            target = os.path.join(workdir, "copy.raw")
            wall = run_timed(["qemu-img", "convert", *options, "-O", "raw", payload, target])[0]
            os.unlink(target)
            return wall

        rows = [
            ratio_row(
                f"evs volume create --full-clone, {args.gib} GiB{label}",
                *interleaved(args.pairs, full_clone, functools.partial(qemu_convert, *options)),
                "s",
                "<= 1",
            )
            for label, options in (("", ()), (" (anchor synced)", ("-t", "writeback")))
        ]
        # Our clone is durable when the command returns; qemu-img convert by default never
        # syncs its output, and with -t writeback it syncs once at the end, as we do.
        print("anchor: qemu-img convert -O raw")
        print_table("evs", "anchor", rows, args.pairs, (load_before, os.getloadavg()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
