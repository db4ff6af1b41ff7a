"""The control plane's costs (issue 13), each next to its anchor measured in the same run.

``python -m bench.control_bench [--pairs N] [--dir DIR]`` prints:
- ``evs snapshot create`` (the whole embedded command) against ``qemu-img snapshot -c`` on
  a qcow2 holding the same data, run in interleaved pairs (A B A B);
- ``evs --help`` CPU time against ``python -c pass``, in interleaved pairs;
- the fsync/fdatasync calls and pool opens of one ``evs snapshot create`` and one
  ``evs volume list``, counted by strace (every sync the process makes, whoever makes it).
Medians with their spread (min-max), and the load average before and after.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DATA_MIB = 64


def _evs(*args: str) -> list[str]:
    return [sys.executable, "-m", "evs_driver.cmd.evs", *args]


def _run(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run to success; return (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _pairs(pairs: int, ours, anchor) -> tuple[list[float], list[float]]:
    """Interleave ``ours()`` and ``anchor()`` (A B A B ...) after one warm-up of each."""
    ours(), anchor()
    mine, theirs = [], []
    for _ in range(pairs):
        mine.append(ours())
        theirs.append(anchor())
    return mine, theirs


def _row(what: str, mine: list[float], theirs: list[float], unit: str, goal: str) -> str:
    scale = 1000.0 if unit == "ms" else 1.0
    a, b = statistics.median(mine), statistics.median(theirs)
    spread = f"{min(mine) * scale:.1f}-{max(mine) * scale:.1f} / "
    spread += f"{min(theirs) * scale:.1f}-{max(theirs) * scale:.1f}"
    return (
        f"{what:<44} {a * scale:8.1f} {unit} {b * scale:8.1f} {unit} "
        f"{a / b:6.2f}  {goal:<8} (spread {spread})"
    )


def _print_table(rows: list[str], pairs: int, load_before: tuple, note: str = "") -> None:
    """The rows under a header, then the run's pairs, load average and machine."""
    load_after = os.getloadavg()
    print(f"{'what':<44} {'evs':>11} {'anchor':>11} {'ratio':>6}  goal")
    for row in rows:
        print(row)
    print(
        f"{note}{pairs} interleaved pairs, medians; load average (1/5/15 min) "
        f"before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}; "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


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


def main(argv: list[str] | None = None) -> None:
    """Run the control-plane benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs (at least 3)")
    parser.add_argument("--dir", default=None, help="where to put the state (default: /tmp)")
    args = parser.parse_args(argv)
    if args.pairs < 3:
        parser.error("--pairs must be at least 3")
    workdir = tempfile.mkdtemp(prefix="evs-control-bench-", dir=args.dir)
    try:
        load_before = os.getloadavg()
        state = os.path.join(workdir, "state")
        env = dict(os.environ, EVS_STATE_PATH=state, HOME=workdir)
        env.pop("EVS_FAULT_INJECT", None)
        # An installed package has its bytecode; without it every command compiles ~130
        # modules from source (about 0.26 s here), which measures the setup, not evs.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        package = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "evs_driver"
        )
        subprocess.run([sys.executable, "-m", "compileall", "-q", package], env=env, check=True)
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
            _evs("volume", "create", "--size", "1", "--name", "v"),
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            _evs("volume", "import", "v", payload), env=env, check=True, stdout=subprocess.DEVNULL
        )
        serial = iter(range(1_000_000))

        def snapshot() -> float:
            name = f"s{next(serial)}"
            return _run(_evs("snapshot", "create", "v", "--name", name), env)[0]

        def qemu_snapshot() -> float:
            name = f"s{next(serial)}"
            return _run(["qemu-img", "snapshot", "-c", name, image])[0]

        rows = [
            _row(
                "evs snapshot create (embedded, whole command)",
                *_pairs(args.pairs, snapshot, qemu_snapshot),
                "ms",
                "<= 2",
            )
        ]
        python = [sys.executable, "-c", "pass"]
        rows.append(
            _row(
                "evs --help, CPU",
                *_pairs(args.pairs, lambda: _run(_evs("--help"), env)[1], lambda: _run(python)[1]),
                "ms",
                "<= 3",
            )
        )
        for what, command, goal in (
            ("one evs snapshot create", ("snapshot", "create", "v", "--name", "counted"), 4),
            ("one evs volume list", ("volume", "list"), 0),
        ):
            syncs, opens = _strace_counts(_evs(*command), env, workdir)
            rows.append(f"{'fsync/fdatasync calls in ' + what:<44} {syncs:8d}    goal <= {goal}")
            rows.append(f"{'pool opens in ' + what:<44} {opens:8d}    goal <= 1")
        _print_table(rows, args.pairs, load_before)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
