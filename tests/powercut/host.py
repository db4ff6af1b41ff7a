#!/usr/bin/env python3
"""Cut the power of a QEMU guest running evs-volume on ext4, again and again; check each.

    python tests/powercut/host.py [--cuts N] [--minutes M] [--seed S] [--plant-bug]

Each round of the guest (``tests/lvm_guest``'s, on one persistent virtio disk) checks what
the previous cut left (``guest.py``), then works until this script SIGKILLs QEMU at a
random moment of its workload (or, in some rounds, of its recovery and check): the guest's
page cache and every request in flight are lost, as at a power cut. Rounds resume a guest
saved once booted, before it first mounted the disk (``resume.py``); the last round only
checks, after a cold boot. ``EVS_POWERCUT_CUTS`` sets the number of cuts (default 20);
``EVS_POWERCUT_MINUTES`` (default 10, 0 for none) stops earlier on a slow machine, starting
no cut that would end after it. Exit status 0 when every check passed.
"""

import argparse
import fcntl
import json
import os
import random
import shlex
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lvm_guest"))

import build  # noqa: E402  (tests/lvm_guest)
import qmp  # noqa: E402  (beside this file)
import resume  # noqa: E402
import run as guest  # noqa: E402

CUTS = int(os.environ.get("EVS_POWERCUT_CUTS", "20"))
MINUTES = float(os.environ.get("EVS_POWERCUT_MINUTES", "10"))  # CI's share: 0 lifts it
DISK_GIB = 2
# cache=none: O_DIRECT on the host and a volatile write cache shown to the guest, so the
# guest's kernel sends FLUSH and FUA as on real disks and QEMU turns FLUSH into fdatasync.
CACHE = "none"
MODULES = ("oslo_config", "oslo_log", "evs_driver")  # what guest.py imports from site-packages
BOOT_TIMEOUT = 900  # seconds: bounds a hung boot
EARLY_CUTS = 0.25  # the share of rounds cut during recovery and the check, not the workload


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
        self.image_file = os.path.join(self.dir, "booted-guest.state")
        with open(self.disk, "wb") as f:
            f.truncate(DISK_GIB << 30)
        self.sites = guest.site_dirs()

    def _qemu(self, extra: list[str]) -> list[str]:
        return guest.qemu_command(
            self.image, self.dir, self.sites, [self.disk], self.accel, 2048, CACHE, extra
        )

    def _job(self, *arguments: str) -> None:
        command = ["python3", "-m", "tests.powercut.guest", *arguments]
        command += ["--plant-bug"] if self.bug else []
        guest.write_job(self.dir, command, self.sites, ["/dev/vda"])

    def save_image(self) -> float:
        """Boot once to the saved image every cut round resumes; return the seconds it took."""
        self._job("--resume")
        monitor_path = os.path.join(self.dir, "qmp.sock")
        seen = bytearray()

        def save_when_ready(output: bytes) -> None:
            seen.extend(output)
            if resume.READY.encode() in seen:
                seen.clear()
                qmp.Monitor(monitor_path).save(self.image_file)

        started = time.monotonic()
        console = os.path.join(self.dir, "console-save.log")
        extra = ["-qmp", f"unix:{monitor_path},server=on,wait=off"]
        finished = guest.boot(
            self._qemu(extra), BOOT_TIMEOUT, console, False, watch=save_when_ready
        )
        if not finished or not os.path.exists(self.image_file):
            raise RuntimeError(f"the guest was not saved; console: {console}")
        return time.monotonic() - started

    def boot(self, number: int, last: bool) -> tuple[dict | None, float, str | None]:
        """Run one round; return the guest's report, its seconds and when it was cut.

        A cut round resumes the saved image; the last one, only a check, boots cold.
        """
        arguments = ["--round", str(number), "--seed", str(self.rng.randrange(1 << 30))]
        if last:
            self._job(*arguments, "--last")
            extra, orders = [], b""
        else:
            extra = ["-incoming", f"exec:cat {shlex.quote(self.image_file)}"]
            orders = resume.round_orders(time.time(), os.urandom(32), arguments)
        armed = os.path.join(self.dir, "results", f"armed-{number}")
        delay = self.rng.uniform(0, self.window)
        # Some rounds lose power while recovering or checking, timed from the resume.
        early = not last and self.rng.random() < EARLY_CUTS
        cut_at: list[float] = []

        def cut() -> bool:
            if last:
                return False
            if not cut_at and (early or os.path.exists(armed)):
                cut_at.append(time.monotonic() + delay)
            return bool(cut_at) and time.monotonic() >= cut_at[0]

        exit_code = os.path.join(self.dir, "exit-code")
        if os.path.exists(exit_code):
            os.unlink(exit_code)
        started = time.monotonic()
        console = os.path.join(self.dir, f"console-{number}.log")
        cmd = self._qemu(extra)
        finished = guest.boot(cmd, BOOT_TIMEOUT, console, False, cut=cut, console_input=orders)
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
        if early and report is None:
            report = {"ok": True, "cut": "before its check ended", "random": f"cut-{number}"}
        moment = f"{delay:.1f}s {'after the resume' if early else 'into the workload'}"
        return report, elapsed, moment if cut_at else None


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
    started = time.monotonic()
    try:
        cold = rounds.save_image()
    except RuntimeError as exc:
        _log(str(exc))
        return 1
    _log(f"booted and saved the guest in {cold:.1f}s; every cut round resumes it")
    boots: list[float] = []
    drawn: set[str] = set()
    number = 0
    while True:
        spent = time.monotonic() - started
        # The slowest round so far bounds the next; the last check is a cold boot.
        over = bool(boots) and budget > 0 and spent + max(boots) + 2 * cold > budget
        last = number == cuts or over
        report, elapsed, delay = rounds.boot(number, last)
        boots.append(elapsed)
        cut = f", cut {delay}" if delay is not None else ""
        _log(f"round {number}: {elapsed:.1f}s{cut}; {json.dumps(report)}")
        if report is None or not report.get("ok"):
            _log(f"check failed; consoles and evs-volume.log in {rounds.dir}")
            return 1
        if report["random"] in drawn:
            _log(f"round {number} drew the random numbers of an earlier one: ids would repeat")
            return 1
        drawn.add(report["random"])
        if last:
            break
        if delay is None:
            _log(f"round {number} was never cut")
            return 1
        number += 1
    if number < cuts:
        _log(f"the time budget allowed {number} of {cuts} cuts (--minutes, EVS_POWERCUT_MINUTES)")
    _log(
        f"{number} cuts, all checks passed: {len(boots)} rounds in {sum(boots):.0f}s "
        f"(median {sorted(boots)[len(boots) // 2]:.1f}s; the last one a cold boot)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
