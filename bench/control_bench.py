"""The control plane's costs (issue 13), each next to its anchor measured in the same run.

``python -m bench.control_bench [--pairs N] [--dir DIR]`` prints:
- ``evs snapshot create`` (the whole embedded command) against ``qemu-img snapshot -c`` on
  a qcow2 holding the same data, run in interleaved pairs (A B A B);
- the same command through a running ``evs-volume`` (the client path: the socket found
  without oslo.config), and the request alone from a client already connected, each
  against ``qemu-img snapshot -c`` again;
- ``evs --help`` CPU time against ``python -c pass``, in interleaved pairs;
- the fsync/fdatasync calls and pool opens of one ``evs snapshot create`` and one
  ``evs volume list``, counted by strace (every sync the process makes, whoever makes it).
Medians with their spread (min-max), and the load average before and after.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench.helpers import bench_args, evs, evs_env, interleaved, print_table, ratio_row, run_timed
from evs_driver.cmd import socket_cache
from evs_driver.cmd.service_client import ServiceClient
from evs_driver.service import protocol

DATA_MIB = 64


def _strace_counts(argv: list[str], env: dict, workdir: str) -> tuple[int, int]:
    """(fsync + fdatasync calls, opens of a pool's data file) of one run, by strace."""
    log = os.path.join(workdir, "strace.log")
    subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,openat", "-o", log, *argv],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    syncs = opens = 0
    with open(log) as lines:
        for line in lines:
            if "fsync(" in line or "fdatasync(" in line:
                syncs += 1
            elif "/pools/" in line and '/data"' in line:
                opens += 1
    return syncs, opens


def _start_service(state: str, env: dict, log: str) -> subprocess.Popen:
    """``evs-volume`` on ``state``, once it answers on its control socket."""
    with open(log, "a") as output:
        service = subprocess.Popen(
            [sys.executable, "-m", "evs_driver.cmd.volume_service"],
            env=env,
            stdout=output,
            stderr=output,
        )
    path = os.path.join(state, protocol.SOCKET_NAME)
    deadline = time.monotonic() + 120
    while True:
        try:
            client = ServiceClient.connect(path) if os.path.exists(path) else None
        except OSError:
            client = None
        if client is not None:
            client.close()
            return service
        if service.poll() is not None or time.monotonic() > deadline:
            service.kill()
            with open(log) as output:
                raise SystemExit(f"evs-volume did not start:\n{output.read()}")
        time.sleep(0.05)


def _stop_service(service: subprocess.Popen) -> None:
    service.send_signal(signal.SIGTERM)
    try:
        service.wait(timeout=120)
    except subprocess.TimeoutExpired:
        service.kill()


def _through_the_service(pairs: int, env: dict, home: str, snapshot, qemu_snapshot, serial):
    """The rows of ``snapshot create`` through a running ``evs-volume``."""
    time.sleep(socket_cache.RACY_SECONDS + 0.2)  # the configuration's places are old enough
    subprocess.run(evs("volume", "list"), env=env, check=True, stdout=subprocess.DEVNULL)
    if not os.path.exists(os.path.join(home, ".cache", "evs", "control-sockets.json")):
        raise SystemExit("evs did not remember the service's socket: no client-path row")
    rows = [
        ratio_row(
            "evs snapshot create (through evs-volume)",
            *interleaved(pairs, snapshot, qemu_snapshot),
            "ms",
            "<= 1",
        )
    ]
    rows.append(
        ratio_row(
            "  CPU of the evs process (not the service)",
            *interleaved(pairs, lambda: snapshot(1), lambda: qemu_snapshot(1)),
            "ms",
            "-",
        )
    )
    client = ServiceClient.connect(os.path.join(env["EVS_STATE_PATH"], protocol.SOCKET_NAME))
    try:

        def request() -> float:
            start = time.perf_counter()
            client.call("snapshot_create", "v", name=f"s{next(serial)}")
            return time.perf_counter() - start

        rows.append(
            ratio_row(
                "  of which the request (connected client)",
                *interleaved(pairs, request, qemu_snapshot),
                "ms",
                "-",
            )
        )
    finally:
        client.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the control-plane benchmark and print its rows."""
    args = bench_args(__doc__.splitlines()[0], 5, argv)
    workdir = tempfile.mkdtemp(prefix="evs-control-bench-", dir=args.dir)
    try:
        load_before = os.getloadavg()
        env = evs_env(workdir)
        home = os.path.join(workdir, "home")  # apart: the socket cache watches it
        os.makedirs(os.path.join(home, ".cache"), mode=0o700)
        env["HOME"] = home
        with open(os.path.join(home, "evs_driver.conf"), "w") as config:
            config.write("[DEFAULT]\nmax_snapshots_per_volume = 0\n")  # every row snapshots
        payload = os.path.join(workdir, "payload.raw")
        with open(payload, "wb") as file:
            file.write(os.urandom(DATA_MIB << 20))
        image = os.path.join(workdir, "anchor.qcow2")
        subprocess.run(
            ["qemu-img", "convert", "-O", "qcow2", payload, image],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            evs("volume", "create", "--size", "1", "--name", "v"),
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            evs("volume", "import", "v", payload), env=env, check=True, stdout=subprocess.DEVNULL
        )
        serial = iter(range(1_000_000))

        def snapshot(part: int = 0) -> float:
            """Wall (part 0) or CPU (part 1) seconds of one ``evs snapshot create``."""
            name = f"s{next(serial)}"
            return run_timed(evs("snapshot", "create", "v", "--name", name), env)[part]

        def qemu_snapshot(part: int = 0) -> float:
            name = f"s{next(serial)}"
            return run_timed(["qemu-img", "snapshot", "-c", name, image])[part]

        rows = [
            ratio_row(
                "evs snapshot create (embedded, whole command)",
                *interleaved(args.pairs, snapshot, qemu_snapshot),
                "ms",
                "<= 2",
            )
        ]
        state = env["EVS_STATE_PATH"]
        service = _start_service(state, env, os.path.join(workdir, "service.log"))
        try:
            rows += _through_the_service(args.pairs, env, home, snapshot, qemu_snapshot, serial)
        finally:
            _stop_service(service)
        python = [sys.executable, "-c", "pass"]
        rows.append(
            ratio_row(
                "evs --help, CPU",
                *interleaved(
                    args.pairs,
                    lambda: run_timed(evs("--help"), env)[1],
                    lambda: run_timed(python)[1],
                ),
                "ms",
                "<= 3",
            )
        )
        for what, command, goal in (
            ("one evs snapshot create", ("snapshot", "create", "v", "--name", "counted"), 4),
            ("one evs volume list", ("volume", "list"), 0),
        ):
            syncs, opens = _strace_counts(evs(*command), env, workdir)
            rows.append(f"{'fsync/fdatasync calls in ' + what:<44} {syncs:8d}    goal <= {goal}")
            rows.append(f"{'pool opens in ' + what:<44} {opens:8d}    goal <= 1")
        load_after = os.getloadavg()
        print_table("evs", "anchor", rows, args.pairs, (load_before, load_after))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
