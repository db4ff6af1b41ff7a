#!/usr/bin/env python3
"""Run the LVM tests (or the LVM benchmark) in one throw-away QEMU guest; exit with its code.

    python tests/lvm_guest/run.py [--bench] [--rebuild] [pytest args...]

The guest (stock Debian kernel, lvm2, thin-provisioning-tools, python3) is built once
and cached under ``.cache/lvm-guest/``. The repository and this interpreter's
site-packages reach the guest read-only over 9p; a third, writable share carries the
job script in and the exit code, results and captured output back. Blank sparse
virtio disks give the tests real block devices for their volume groups.
"""

import argparse
import compileall
import fcntl
import importlib
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence

import build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(REPO, ".cache", "lvm-guest")
QEMU = "qemu-system-x86_64"
DEFAULT_TESTS = ("tests/conformance", "tests/functional/lvm", "tests/functional/attach")
GUEST_PYTHON = (3, 11)  # Debian 12's python3
# The guest imports these from this interpreter's site-packages.
GUEST_MODULES = ("pytest", "ddt", "oslo_config", "oslo_concurrency", "os_brick", "evs_driver")
# vda: conformance, vdb: functional, vdc: a small one to fill up, vdd: attach (lvm_thin LUNs)
DISK_SIZES_GIB = (4, 4, 1, 4)


def _log(msg: str) -> None:
    print(f"lvm-guest: {msg}", file=sys.stderr, flush=True)


def ensure_qemu() -> None:
    """Install QEMU from Debian when it is missing (the harness runs as root)."""
    if shutil.which(QEMU):
        return
    _log(f"{QEMU} missing: installing qemu-system-x86")
    install = ["apt-get", "install", "-q", "-y", "--no-install-recommends", "qemu-system-x86"]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)


def missing_modules(names: tuple[str, ...] = GUEST_MODULES) -> list[str]:
    """Modules the guest needs that this interpreter cannot import (its site-packages is shared)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def site_dirs() -> list[str]:
    """This interpreter's site-packages directories (pure and platform), without repeats."""
    paths = sysconfig.get_paths()
    dirs = []
    for key in ("purelib", "platlib"):
        real = os.path.realpath(paths[key])
        if os.path.isdir(real) and real not in dirs:
            dirs.append(real)
    return dirs


def compile_sources() -> None:
    """Byte-compile the repository's Python here, so the guest (same Python minor version,
    so the same bytecode) does not compile every module under emulation at each boot."""
    for tree in ("evs_driver", "tests"):
        compileall.compile_dir(os.path.join(REPO, tree), quiet=1, workers=1)


def write_job(run_dir: str, command: list[str], sites: list[str], disks: list[str]) -> None:
    """Write the shell script the guest's init runs, with the shares it mounts."""
    lines = ["set -u", "bb=/bin/busybox", "pythonpath=/mnt/repo"]
    for i, _ in enumerate(sites):
        mount = f"/mnt/site{i}"
        lines += [
            f"$bb mkdir -p {mount}",
            f"$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro "
            f"site{i} {mount} || exit 97",
            f"pythonpath=$pythonpath:{mount}",
        ]
    lines += [
        "export PYTHONPATH=$pythonpath PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
        "export EVS_LVM_GUEST=1 EVS_LVM_RESULTS=/mnt/run/results",
        f"export EVS_LVM_DISKS={','.join(disks)}",
        "$bb mkdir -p /mnt/run/results",
        "cd /mnt/repo",
        # exec: no shell is left holding the share, so a job may unmount it (power cuts do).
        "exec " + shlex.join(command),
    ]
    with open(os.path.join(run_dir, "job.sh"), "w") as f:
        f.write("\n".join(lines) + "\n")


def qemu_command(
    guest: build.Guest,
    run_dir: str,
    sites: list[str],
    disks: list[str],
    accel: str,
    mem: int,
    cache: str = "unsafe",
    extra: Sequence[str] = (),
) -> list[str]:
    """The QEMU command line that boots the guest with its shares and disks.

    ``cache``: QEMU's cache mode of the disks; scratch disks ignore the guest's flushes.
    ``extra``: more QEMU arguments (a QMP socket, ``-incoming``).
    """
    cmd = [QEMU, "-accel", accel, "-cpu", "host" if accel == "kvm" else "max"]
    cmd += ["-m", str(mem), "-smp", "1", "-nodefaults", "-no-user-config", "-no-reboot"]
    cmd += ["-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none"]
    # An ELF vmlinux boots through QEMU's PVH entry: no real-mode setup, no decompression.
    cmd += ["-kernel", guest.kernel, "-initrd", guest.initrd]
    cmd += ["-append", "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off"]
    shares = [("repo", REPO, True), ("run", run_dir, False)]
    shares += [(f"site{i}", path, True) for i, path in enumerate(sites)]
    for tag, path, read_only in shares:
        virtfs = f"local,path={path},mount_tag={tag},security_model=none"
        cmd += ["-virtfs", virtfs + (",readonly=on" if read_only else "")]
    for disk in disks:
        cmd += ["-drive", f"file={disk},format=raw,if=virtio,cache={cache}"]
    return cmd + list(extra)


def boot(
    cmd: list[str],
    timeout: float,
    log_path: str,
    echo: bool = True,
    cut: Callable[[], bool] | None = None,
    console_input: bytes = b"",
    watch: Callable[[bytes], None] | None = None,
) -> bool:
    """Run QEMU, stream its console to stdout and ``log_path``; False when it timed out.

    ``cut``: polled about every 50 ms; once it returns True, QEMU is SIGKILLed (a power cut).
    ``console_input``: typed on the guest's serial console. ``watch``: sees each piece of
    console output as it comes.
    """
    deadline = time.monotonic() + timeout
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if console_input else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        if console_input:
            proc.stdin.write(console_input)  # kept open: an EOF would end the console's input
            proc.stdin.flush()
        fd = proc.stdout.fileno()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proc.kill()
                proc.wait()
                return False
            if cut is not None and cut():
                proc.kill()
                break
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.05 if cut else 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            log.write(chunk)
            if watch is not None:
                watch(chunk)
            if echo:
                sys.stdout.buffer.write(chunk.replace(b"\r\n", b"\n"))
                sys.stdout.flush()
        proc.wait()
    return True


class GuestRun:
    """One boot: a fresh run directory, blank disks, a job, and the guest's exit code."""

    def __init__(self, guest: build.Guest, name: str = "run"):
        self.guest = guest
        self.dir = os.path.join(CACHE, name)
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        self.disk_files = []
        for i, gib in enumerate(DISK_SIZES_GIB):
            path = os.path.join(self.dir, f"disk{i}.img")
            with open(path, "wb") as f:
                f.truncate(gib << 30)  # sparse: costs no space until the guest writes
            self.disk_files.append(path)

    def run(self, command: list[str], accel: str, timeout: float, echo: bool = True) -> int:
        """Boot the guest running ``command``; return its exit code (1 when it never reported)."""
        sites = site_dirs()
        guest_disks = [f"/dev/vd{chr(ord('a') + i)}" for i in range(len(self.disk_files))]
        write_job(self.dir, command, sites, guest_disks)
        cmd = qemu_command(self.guest, self.dir, sites, self.disk_files, accel, mem=2048)
        started = time.monotonic()
        finished = boot(cmd, timeout, os.path.join(self.dir, "console.log"), echo)
        elapsed = time.monotonic() - started
        for disk in self.disk_files:
            os.unlink(disk)
        if not finished:
            if echo:
                _log(f"guest timed out after {timeout:.0f}s (accel {accel})")
            return 1
        try:
            with open(os.path.join(self.dir, "exit-code")) as f:
                code = int(f.read().strip())
        except (OSError, ValueError):
            if echo:
                _log(f"guest never reported an exit code (accel {accel}, {elapsed:.1f}s)")
            return 1
        if echo:
            _log(f"guest exited with {code} after {elapsed:.1f}s (accel {accel})")
        return code


def choose_accel(guest: build.Guest, requested: str) -> str:
    """KVM when asked for, or when 'auto' and a probe boot with it works; else TCG."""
    if requested != "auto":
        return requested
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    probe_file = os.path.join(CACHE, "accel.json")
    host = f"{os.uname().release} {build.build_key()}"
    try:
        with open(probe_file) as f:
            cached = json.load(f)
        if cached.get("host") == host:
            return cached["accel"]
    except (OSError, ValueError, KeyError):
        pass
    _log("probing KVM with a short boot")
    ok = GuestRun(guest, "kvm-probe").run(["true"], "kvm", timeout=30, echo=False) == 0
    accel = "kvm" if ok else "tcg"
    _log(f"KVM {'works' if ok else 'does not boot the guest'}: using {accel}")
    with open(probe_file, "w") as f:
        json.dump({"host": host, "accel": accel}, f)
    return accel


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the guest when needed, boot it and return its exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", action="store_true", help="run bench/lvm_latency.py instead")
    parser.add_argument(
        "--bench-attach", action="store_true", help="run bench/attach_bench.py (fio via iSCSI)"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached guest")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds for the whole boot")
    parser.add_argument("--shell", help="run this shell command in the guest instead")
    args, rest = parser.parse_known_args(argv)
    if sys.version_info[:2] != GUEST_PYTHON:
        _log(
            f"warning: this is Python {sys.version_info[0]}.{sys.version_info[1]}; the guest runs "
            f"{GUEST_PYTHON[0]}.{GUEST_PYTHON[1]}, so compiled modules in site-packages may not load"
        )
    missing = missing_modules()
    if missing:
        _log(
            f"{sys.executable} cannot import {', '.join(missing)}: run this with the project's venv"
        )
        return 2
    ensure_qemu()
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        # One run at a time: runs share the cached image and the run directory.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run_locked(args, rest)


def run_locked(args: argparse.Namespace, rest: list[str]) -> int:
    """Build when needed, pick the accelerator, boot the job; return the guest's exit code."""
    started = time.monotonic()
    guest = build.ensure_guest(CACHE, rebuild=args.rebuild)
    _log(f"guest ready in {time.monotonic() - started:.1f}s")
    accel = choose_accel(guest, args.accel)
    if args.shell:
        command = ["/bin/busybox", "sh", "-c", args.shell]
    elif args.bench:
        command = ["python3", "bench/lvm_latency.py", *rest]
    elif args.bench_attach:
        command = ["python3", "bench/attach_bench.py", *rest]
    else:
        command = ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--color=no"]
        # A test stuck in the kernel shows where, instead of only the boot timing out.
        command += ["-o", "faulthandler_timeout=300", "--durations=15"]
        names_tests = any(os.path.exists(os.path.join(REPO, a.split("::")[0])) for a in rest)
        command += rest if names_tests else [*rest, *DEFAULT_TESTS]
    return GuestRun(guest).run(command, accel, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
