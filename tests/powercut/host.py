#!/usr/bin/env python3
"""Cut the power of a QEMU guest running evs-volume on ext4, again and again; check each.

    python tests/powercut/host.py [--cuts N] [--minutes M] [--seed S] [--plant-bug]

Each boot of the guest (``tests/lvm_guest``'s, on one persistent virtio disk) checks what
the previous cut left (``guest.py``), then works until this script SIGKILLs QEMU at a
random moment of its workload: the guest's page cache and every request in flight are
lost, as at a power cut. The last boot only checks. ``EVS_POWERCUT_CUTS`` sets the number
of cuts (default 20); ``EVS_POWERCUT_MINUTES`` (default 10, 0 for none) stops earlier on a
slow machine, starting no cut that would end after it. Exit status 0 when every check passed.
"""

import argparse
import fcntl
import json
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lvm_guest"))

import build  # noqa: E402  (tests/lvm_guest)
import run as guest  # noqa: E402

CUTS = int(os.environ.get("EVS_POWERCUT_CUTS", "20"))
MINUTES = float(os.environ.get("EVS_POWERCUT_MINUTES", "10"))  # CI's share: 0 lifts it
DISK_GIB = 2
# cache=none: O_DIRECT on the host and a volatile write cache shown to the guest, so the
# guest's kernel sends FLUSH and FUA as on real disks and QEMU turns FLUSH into fdatasync.
CACHE = "none"
MODULES = ("oslo_config", "oslo_log", "evs_driver")  # what guest.py imports from site-packages
BOOT_TIMEOUT = 900  # seconds: bounds a hung boot


def _log(msg: str) -> None:
    print(f"powercut: {msg}", file=sys.stderr, flush=True)


class Rounds:
    """The run directory, the persistent disk and one boot after another."""

    def __init__(
        self, image: build.Guest, accel: str, window: float, rng: random.Random, bug: bool
    ):
        self.bug = bug
        self.image = image
        self.accel = accel
        self.window = window
        self.rng = rng
        self.dir = os.path.join(guest.CACHE, "powercut")
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(os.path.join(self.dir, "results"))
        self.disk = os.path.join(self.dir, "disk.img")
        with open(self.disk, "wb") as f:
            f.truncate(DISK_GIB << 30)
        self.sites = guest.site_dirs()

    def boot(self, number: int, last: bool) -> tuple[dict | None, float, float | None]:
        """Boot once; return the guest's report, the boot's seconds and when it was cut."""
        command = ["python3", "-m", "tests.powercut.guest", "--round", str(number)]
        command += ["--seed", str(self.rng.randrange(1 << 30))] + (["--last"] if last else [])
        command += ["--plant-bug"] if self.bug else []
        guest.write_job(self.dir, command, self.sites, ["/dev/vda"])
        armed = os.path.join(self.dir, "results", f"armed-{number}")
        delay = self.rng.uniform(0, self.window)
        cut_at: list[float] = []

        def cut() -> bool:
            if last:
                return False
            if not cut_at and os.path.exists(armed):
                cut_at.append(time.monotonic() + delay)
            return bool(cut_at) and time.monotonic() >= cut_at[0]

        exit_code = os.path.join(self.dir, "exit-code")
        if os.path.exists(exit_code):
            os.unlink(exit_code)
        cmd = guest.qemu_command(
            self.image, self.dir, self.sites, [self.disk], self.accel, mem=2048, cache=CACHE
        )
        started = time.monotonic()
        console = os.path.join(self.dir, f"console-{number}.log")
        finished = guest.boot(cmd, BOOT_TIMEOUT, console, echo=False, cut=cut)
        elapsed = time.monotonic() - started
        if not finished:
            _log(f"boot {number} timed out after {elapsed:.0f}s; console: {console}")
        try:
            with open(os.path.join(self.dir, "results", f"round-{number}.json")) as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = None
        if not last and os.path.exists(exit_code):
            _log(f"boot {number} ended by itself before the cut; console: {console}")
            report = dict(report or {}, ok=False)
        return report, elapsed, delay if cut_at else None


def main(argv: list[str] | None = None) -> int:
    """Run the cuts; 0 when every boot's check passed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=CUTS, help="at most this many cuts")
    parser.add_argument(
        "--minutes",
        type=float,
        default=MINUTES,
        help="start no cut that would end after this many minutes (0: no limit)",
    )
    parser.add_argument("--seed", type=int, default=None, help="of the cut moments and workloads")
    parser.add_argument(
        "--window", type=float, default=8.0, help="cut within this many seconds of the workload"
    )
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument(
        "--plant-bug",
        action="store_true",
        help="run the engine with a planted bug (the data file never synced): must fail",
    )
    args = parser.parse_args(argv)
    missing = guest.missing_modules(MODULES)
    if missing:
        _log(
            f"{sys.executable} cannot import {', '.join(missing)}: run this with the project's venv"
        )
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    _log(f"up to {args.cuts} cuts in {args.minutes:g} min, seed {seed} (--seed {seed} repeats)")
    guest.ensure_qemu()
    os.makedirs(guest.CACHE, exist_ok=True)
    with open(os.path.join(guest.CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one guest run at a time: they share the image
        image = build.ensure_guest(guest.CACHE)
        guest.compile_sources()
        accel = guest.choose_accel(image, args.accel)
        rounds = Rounds(image, accel, args.window, random.Random(seed), args.plant_bug)
        return _run(rounds, args.cuts, args.minutes * 60)


def _run(rounds: Rounds, cuts: int, budget: float) -> int:
    boots: list[float] = []
    started = time.monotonic()
    number = 0
    while True:
        spent = time.monotonic() - started
        # The slowest boot so far bounds the next one and the final check after it.
        over = bool(boots) and budget > 0 and spent + 2 * max(boots) > budget
        last = number == cuts or over
        report, elapsed, delay = rounds.boot(number, last)
        boots.append(elapsed)
        cut = f", cut {delay:.1f}s into the workload" if delay is not None else ""
        _log(f"boot {number}: {elapsed:.1f}s{cut}; {json.dumps(report)}")
        if report is None or not report.get("ok"):
            _log(f"check failed; consoles and evs-volume.log in {rounds.dir}")
            return 1
        if last:
            break
        if delay is None:
            _log(f"boot {number} was never cut")
            return 1
        number += 1
    if number < cuts:
        _log(f"the time budget allowed {number} of {cuts} cuts (--minutes, EVS_POWERCUT_MINUTES)")
    _log(
        f"{number} cuts, all checks passed: {len(boots)} boots in {sum(boots):.0f}s "
        f"(median {sorted(boots)[len(boots) // 2]:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
