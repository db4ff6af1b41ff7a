"""Snapshot, clone and revert latency on RBD: ours against the ``rbd`` CLI and Cinder's way.

Part of ``bench.rbd_bench`` (run it under ``tools/ceph-test-cluster run``). 4 GiB volumes,
one with 16 MiB written and one with 4 GiB (``rbd bench``, before the snapshot every round
reverts to), so a ratio near 1 means the cost does not grow with the data. Our revert swaps
images while the others roll back in place, so ours has its own pair of volumes.
Each round runs every (operation, way, size) once, in a fixed interleaved order.
- ours: the backend (snapshot; clone v2 child; clone-and-swap revert)
- rbd CLI: ``rbd snap create``, ``rbd clone``, ``rbd snap rollback`` (a process each, so it
  includes starting and connecting: the "CLI noop" row, ``rbd snap ls``, shows that floor)
- Cinder: what Cinder's RBD driver does through librbd: snapshot + protect, clone of the
  protected snapshot, ``rollback_to_snap`` (+ resize)
"""

import statistics
import subprocess
import time
import uuid

from evs_driver.backends.rbd import naming

MiB = 1 << 20
GiB = 1 << 30
VOLUME = 4 * GiB
WRITTEN = {"16 MiB": 16 * MiB, "4 GiB": 4 * GiB}
WAYS = ("ours", "rbd CLI", "Cinder")
OPERATIONS = ("snapshot", "clone", "revert")


def _ms(func) -> float:
    started = time.perf_counter()
    func()
    return (time.perf_counter() - started) * 1000


class Latency:
    """The volumes, and one timed call per (operation, way, size)."""

    def __init__(self, backend, admin_conf: str):
        self.backend = backend
        self.cluster = backend.cluster
        self.rbd = backend.cluster.rbd
        self.conf = admin_conf
        self.volumes: dict[tuple[bool, str], str] = {}  # (ours?, size label) -> volume
        self.base: dict[tuple[bool, str], str] = {}  # the snapshot every revert goes back to

    def cli(self, *args: str) -> None:
        subprocess.run(["rbd", "-c", self.conf, *args], check=True, capture_output=True)

    def prepare(self) -> None:
        for key in ((ours, label) for ours in (True, False) for label in WRITTEN):
            amount = WRITTEN[key[1]]
            vol, snap = str(uuid.uuid4()), str(uuid.uuid4())
            self.backend.create_volume(vol, VOLUME)
            spec = self.cluster.spec(naming.volume(vol))
            self.cli("bench", "--io-type", "write", "--io-size", "4M", "--io-threads", "8",
                     "--io-pattern", "seq", "--io-total", str(amount), spec)  # fmt: skip
            self.backend.create_snapshot(vol, snap)
            self.volumes[key], self.base[key] = vol, snap

    def run(self, operation: str, way: str, label: str) -> float:
        key = (way == "ours", label)
        vol, base = self.volumes[key], self.base[key]
        name = naming.volume(vol)
        spec = self.cluster.spec(name)
        tag = uuid.uuid4().hex[:8]
        if operation == "snapshot":
            if way == "ours":
                return _ms(lambda: self.backend.create_snapshot(vol, str(uuid.uuid4())))
            if way == "rbd CLI":
                return _ms(lambda: self.cli("snap", "create", f"{spec}@cli-{tag}"))
            return _ms(lambda: self._librbd_snap_protect(name, f"cinder-{tag}"))
        if operation == "clone":
            if way == "ours":
                clone = str(uuid.uuid4())
                return _ms(lambda: self.backend.create_volume_from_snapshot(base, clone, VOLUME))
            if way == "rbd CLI":
                target = self.cluster.spec(f"cli-clone-{tag}")
                return _ms(lambda: self.cli("clone", f"{spec}@{naming.snapshot(base)}", target))
            protected = f"cinder-p-{tag}"
            self._librbd_snap_protect(name, protected)
            return _ms(lambda: self._librbd_clone(name, protected, f"cinder-clone-{tag}"))
        if way == "ours":
            return _ms(lambda: self.backend.revert_to_snapshot(vol, base))
        if way == "rbd CLI":
            return _ms(
                lambda: self.cli(
                    "snap", "rollback", "--no-progress", f"{spec}@{naming.snapshot(base)}"
                )
            )
        return _ms(lambda: self._librbd_rollback(name, naming.snapshot(base)))

    def cli_floor(self) -> float:
        spec = self.cluster.spec(naming.volume(self.volumes[(False, "16 MiB")]))
        return _ms(lambda: self.cli("snap", "ls", spec))

    def _librbd_snap_protect(self, name: str, snap: str) -> None:
        with self.rbd.Image(self.cluster.ioctx, name) as image:
            image.create_snap(snap)
            image.protect_snap(snap)

    def _librbd_clone(self, parent: str, snap: str, child: str) -> None:
        self.rbd.RBD().clone(self.cluster.ioctx, parent, snap, self.cluster.ioctx, child,
                             features=self.backend.lineage.features)  # fmt: skip

    def _librbd_rollback(self, name: str, snap: str) -> None:
        with self.rbd.Image(self.cluster.ioctx, name) as image:
            size = image.size()
            image.rollback_to_snap(snap)
            if image.size() < size:
                image.resize(size)


def measure(backend, admin_conf: str, rounds: int) -> dict:
    """{(operation, way, size label): [ms...]} and the CLI floor, interleaved per round."""
    bench = Latency(backend, admin_conf)
    bench.prepare()
    results: dict = {}
    floor = []
    for _ in range(rounds):
        for operation in OPERATIONS:
            for way in WAYS:
                for label in WRITTEN:
                    results.setdefault((operation, way, label), []).append(
                        bench.run(operation, way, label)
                    )
        floor.append(bench.cli_floor())
    results[("CLI noop", "rbd CLI", "16 MiB")] = floor
    return results


def table(results: dict) -> list[str]:
    """Rows: median ms (min-max) per size, the 4 GiB/16 MiB ratio, ours vs each way."""
    rows = ["| operation | way | 16 MiB written, ms | 4 GiB written, ms | 4 GiB / 16 MiB | ours / this way (4 GiB) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for (operation, way, label), _ in sorted(results.items(), key=_order):
        if label != "16 MiB":
            continue
        small = results[(operation, way, "16 MiB")]
        large = results.get((operation, way, "4 GiB"), small)
        ours = results.get((operation, "ours", "4 GiB"))
        versus = f"{statistics.median(ours) / statistics.median(large):.2f}" if ours else ""
        rows.append(
            f"| {operation} | {way} | {_cell(small)} | {_cell(large)} | "
            f"{statistics.median(large) / statistics.median(small):.2f} | {versus} |"
        )
    return rows


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _order(item):
    (operation, way, _), _ = item
    ops = (*OPERATIONS, "CLI noop")
    return ops.index(operation), WAYS.index(way)
