"""The rbd backend's benchmark: operation latency (bench.rbd_latency) and fio (bench.rbd_fio).

Run on the throw-away cluster, with the Ceph bindings linked into the venv:
    tools/link-ceph-bindings .venv/bin/python
    tools/ceph-test-cluster run -- .venv/bin/python -m bench.rbd_bench [--rounds 5] [--pairs 3]
It prints the load before and after and two markdown tables (median, min-max, ratios).
Every figure is from this one run on this machine; ratios are the numbers to read.
"""

import argparse
import os
import sys

from bench import rbd_fio, rbd_latency
from evs_driver.backends.rbd import RbdBackend
from tests.lvm_guest.guestenv import backend_conf
from tests.rbd import cephenv

MiB = 1 << 20


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def backend(namespace: str) -> RbdBackend:
    instance = RbdBackend(backend_conf("bench", **cephenv.settings(namespace)), "bench")
    instance.setup()
    return instance


def main(argv=None) -> None:
    """Run both parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (default 5)")
    parser.add_argument("--pairs", type=int, default=3, help="fio A/B pairs (default 3)")
    parser.add_argument("--runtime", type=int, default=5, help="seconds per fio run")
    parser.add_argument("--fio-size", default=1024, type=int, help="fio image MiB (1024)")
    args = parser.parse_args(argv)
    if not cephenv.configured() or not os.environ.get("EVS_RBD_CLUSTER"):
        sys.exit("run under tools/ceph-test-cluster run (it needs the test cluster's admin key)")
    admin_conf = os.path.join(os.environ["EVS_RBD_CLUSTER"], "ceph.conf")
    print(f"load before: {load()} (1, 5, 15 min); {os.cpu_count()} CPUs")
    latency_backend = backend(cephenv.new_namespace())
    try:
        latency = rbd_latency.measure(latency_backend, admin_conf, args.rounds)
    finally:
        latency_backend.close()
    print(f"\nLatency, {args.rounds} rounds interleaved; 4 GiB volumes:")
    print("\n".join(rbd_latency.table(latency)))
    fio_backend = backend("")  # fio's rbd engine knows no namespaces
    try:
        fio = rbd_fio.measure(
            fio_backend, admin_conf, args.fio_size * MiB, args.runtime, args.pairs
        )
    finally:
        fio_backend.close()
    print(
        f"\nfio, iodepth 32, {args.runtime} s runs, {args.pairs} pairs, {args.fio_size} MiB image:"
    )
    print("\n".join(rbd_fio.table(fio)))
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
