"""House helpers for benchmarks: interleaved pairs, median with spread, the machine's load,
and waiting for a server process's socket."""

import os
import statistics
import subprocess
import time
from collections.abc import Callable


def interleaved(pairs: int, ours: Callable[[], float], anchor: Callable[[], float]):
    """Run ``ours`` and ``anchor`` alternately (A B A B ...) ``pairs`` times; return both lists."""
    if pairs < 3:
        raise SystemExit("at least 3 interleaved pairs are needed for a median and a spread")
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
