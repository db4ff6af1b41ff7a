"""House helpers for benchmarks: interleaved pairs, median with spread, the machine's load,
the common arguments and table, ``evs`` runs, and waiting for a server process's socket."""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable


def interleaved(
    pairs: int, ours: Callable[[], float], anchor: Callable[[], float], warm_up: bool = True
):
    """Run ``ours`` and ``anchor`` alternately (A B A B ...) ``pairs`` times, after one
    untimed run of each unless ``warm_up`` is False; return both lists."""
    if pairs < 3:
        raise SystemExit("at least 3 interleaved pairs are needed for a median and a spread")
    if warm_up:
        ours(), anchor()
    mine, theirs = [], []
    for _ in range(pairs):
        mine.append(ours())
        theirs.append(anchor())
    return mine, theirs


def median_spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def load() -> str:
    """The load average (1/5/15 min) and the CPU count, as one phrase."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def wait_for_socket(proc: subprocess.Popen, sock: str, name: str) -> None:
    """Wait until ``proc`` (started with ``stderr=PIPE, text=True``) made ``sock``."""
    for _ in range(100):
        if os.path.exists(sock):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{name} failed: {proc.stderr.read()}")
        time.sleep(0.05)
    raise SystemExit(f"{name} did not create its socket")


def evs(*args: str) -> list[str]:
    """The command line of one embedded ``evs`` run."""
    return [sys.executable, "-m", "evs_driver.cmd.evs", *args]


def evs_env(workdir: str) -> dict:
    """The environment of ``evs`` runs on a state path in ``workdir``, with the package
    byte-compiled first, as an installed one is."""
    env = dict(os.environ, EVS_STATE_PATH=os.path.join(workdir, "state"), HOME=workdir)
    env.pop("EVS_FAULT_INJECT", None)
    # Without bytecode every command compiles ~130 modules from source (about 0.26 s
    # here), which measures the setup, not evs.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    package = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "evs_driver"
    )
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], env=env, check=True)
    return env


def run_timed(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run to success; return (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def ratio_row(what: str, mine: list[float], theirs: list[float], unit: str, goal: str) -> str:
    """One row: both medians, their ratio, the goal and both spreads (min-max)."""
    scale = 1000.0 if unit == "ms" else 1.0
    a, b = statistics.median(mine), statistics.median(theirs)
    spread = f"{min(mine) * scale:.1f}-{max(mine) * scale:.1f} / "
    spread += f"{min(theirs) * scale:.1f}-{max(theirs) * scale:.1f}"
    return (
        f"{what:<44} {a * scale:8.1f} {unit} {b * scale:8.1f} {unit} "
        f"{a / b:6.2f}  {goal:<8} (spread {spread})"
    )


def bench_args(
    description: str,
    pairs: int,
    argv: list[str] | None,
    parents: tuple[argparse.ArgumentParser, ...] = (),
    **flags: str,
) -> argparse.Namespace:
    """``--pairs`` (at least 3) and ``--dir``: the arguments of every interleaved bench;
    ``parents``: a bench's own arguments; ``flags``: its on/off options, name=help."""
    parser = argparse.ArgumentParser(description=description, parents=list(parents))
    parser.add_argument("--pairs", type=int, default=pairs, help="interleaved pairs (at least 3)")
    parser.add_argument("--dir", default=None, help="where to put its files (default: /tmp)")
    for name, text in flags.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    args = parser.parse_args(argv)
    if args.pairs < 3:
        parser.error("--pairs must be at least 3")
    return args


def print_table(a: str, b: str, rows: list[str], pairs: int, loads: tuple) -> None:
    """The header (columns ``a`` and ``b``), the rows, then the pairs, the load average
    before and after, the CPUs and when."""
    before, after = loads
    print(f"{'what':<44} {a:>11} {b:>11} {'ratio':>6}  goal")
    for row in rows:
        print(row)
    print(
        f"{pairs} interleaved pairs, medians; load average (1/5/15 min) "
        f"before {'/'.join(f'{x:.2f}' for x in before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in after)}; "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
