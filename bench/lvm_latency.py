"""Latency of snapshot, create-from-snapshot and revert: lvm_thin against the local engine.

Runs inside the LVM test guest (``python tests/lvm_guest/run.py --bench [--rounds N]``):
both backends live in the same emulated machine, so their ratio is what to read, not
the absolute times (QEMU emulates the CPU in software here). Prints a table and saves
``bench-lvm-latency.json`` in the run share.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evs_driver.backends.base import Backend  # noqa: E402
from tests.lvm_guest import guestenv  # noqa: E402

MiB = 1 << 20
VOLUME_SIZE = 1024 * MiB
DATA = 64 * MiB  # written before measuring, so snapshots have mappings to share


def lvm_backend() -> Backend:
    """An lvm_thin backend on a fresh volume group on the guest's first disk."""
    guestenv.make_vg("evs-bench", guestenv.disks()[0])
    backend = guestenv.make_backend(
        "evs-bench", "pool", lvm_create_thin_pool=True, lvm_thin_pool_size_percent=80
    )
    backend.setup()
    return backend


def local_backend() -> Backend | None:
    """A local (rowstore) backend in a temporary directory, held open as a service would."""
    try:
        from evs_driver.backends.local import LocalBackend
    except ImportError:
        return None
    from oslo_config import cfg

    from evs_driver.conf import BackendConf, register_opts

    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="evs_bench", default_config_files=[], default_config_dirs=[])
    state = tempfile.mkdtemp(prefix="evs-bench-")
    conf.set_override("state_path", state)
    backend = LocalBackend(BackendConf(conf, "local"), "local")
    backend.setup()
    backend.hold_open()
    return backend


def timed(func, *args) -> float:
    started = time.perf_counter()
    func(*args)
    return (time.perf_counter() - started) * 1000


def measure(backend: Backend, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each operation over ``rounds`` rounds on a volume holding data."""
    vol = str(uuid.uuid4())
    backend.create_volume(vol, VOLUME_SIZE)
    with backend.open_device(vol, writable=True) as dev:
        block = os.urandom(MiB)
        for i in range(DATA // MiB):
            dev.write(i * 4 * MiB, block)  # spread over the volume
        dev.flush()
    results: dict[str, list[float]] = {"snapshot": [], "create_from_snapshot": [], "revert": []}
    made = []
    for _ in range(rounds):
        snap, clone = str(uuid.uuid4()), str(uuid.uuid4())
        results["snapshot"].append(timed(backend.create_snapshot, vol, snap))
        results["create_from_snapshot"].append(
            timed(backend.create_volume_from_snapshot, snap, clone, VOLUME_SIZE)
        )
        with backend.open_device(vol, writable=True) as dev:
            dev.write(0, os.urandom(MiB))
        results["revert"].append(timed(backend.revert_to_snapshot, vol, snap))
        made.append((snap, clone))
    for snap, clone in made:
        backend.delete_volume(clone)
        backend.delete_snapshot(snap)
    backend.delete_volume(vol)
    return results


def main() -> int:
    """Measure each available backend and print median/min/max per operation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not guestenv.in_guest():
        print("lvm_latency needs real LVM: run `python tests/lvm_guest/run.py --bench`")
        return 2
    backends = {"lvm_thin": lvm_backend(), "local": local_backend()}
    report = {}
    for name, backend in backends.items():
        if backend is None:
            print(f"{name}: not available (evs_driver.backends.local missing)")
            continue
        report[name] = measure(backend, args.rounds)
        backend.close()
    print(f"\n{'backend':<10} {'operation':<22} {'median ms':>10} {'min':>8} {'max':>8}")
    for name, ops in report.items():
        for op, values in ops.items():
            print(
                f"{name:<10} {op:<22} {statistics.median(values):>10.1f} "
                f"{min(values):>8.1f} {max(values):>8.1f}"
            )
    if "local" in report:
        for op in report["lvm_thin"]:
            ratio = statistics.median(report["lvm_thin"][op]) / statistics.median(
                report["local"][op]
            )
            print(f"lvm_thin/local median ratio, {op}: {ratio:.1f}x")
    guestenv.save_result("bench-lvm-latency.json", json.dumps(report, indent=1))
    guestenv.remove_vg("evs-bench", guestenv.disks()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
