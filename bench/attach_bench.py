"""fio through three iSCSI LUNs in the guest: a local volume, an lvm_thin LV, a plain file.

    python tests/lvm_guest/run.py --bench-attach [--rounds N] [--seconds S]

The local volume goes through the whole attach chain (its kernel NBD device on the
service's NBD export, then LIO); the lvm_thin volume's LV and a file (LIO's fileio
backstore on the guest's tmpfs, where the local pool lives too) are exported by the same
LIO over the same loopback portal, with the same CHAP and ACL. All three are connected
with os-brick and measured in one run, interleaved A B C per round; QEMU emulates the
CPU here, so read the ratios, not the figures. Prints a table, saves
``bench-attach.json`` in the run share.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evs_driver.attach import names  # noqa: E402
from evs_driver.attach.targets.base import Portal  # noqa: E402
from evs_driver.attach.targets.lio import LioTarget  # noqa: E402
from tests.functional.attach import hostenv  # noqa: E402
from tests.functional.attach.servicectl import VG, Services  # noqa: E402
from tests.lvm_guest import guestenv  # noqa: E402

MiB = 1 << 20
REGION = "256M"  # what the jobs touch, written once before measuring
JOBS = {
    "4 KiB random read": ("randread", "4k", 16),
    "4 KiB random write": ("randwrite", "4k", 16),
    "1 MiB sequential read": ("read", "1M", 4),
    "1 MiB sequential write": ("write", "1M", 4),
}
FILE_LUN_ID = "bench-file-lun"


def fio_run(device: str, rw: str, bs: str, depth: int, seconds: int) -> dict:
    """One time-based fio job; returns IOPS and MB/s."""
    out = subprocess.run(
        [
            "fio",
            "--name=bench",
            f"--filename={device}",
            f"--rw={rw}",
            f"--bs={bs}",
            f"--iodepth={depth}",
            "--direct=1",
            "--ioengine=libaio",
            f"--size={REGION}",
            f"--runtime={seconds}",
            "--time_based",
            "--randrepeat=0",
            "--output-format=json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    job = json.loads(out)["jobs"][0]
    side = job["write" if "write" in rw else "read"]
    return {"iops": side["iops"], "mbps": side["bw_bytes"] / 1e6}


def file_lun(brick: dict, directory: str) -> tuple[LioTarget, dict, str]:
    """A LIO fileio LUN on a sparse file, behind the same kind of target as the volumes."""
    import rtslib_fb as rts

    path = os.path.join(directory, "file-lun.img")
    target = LioTarget("iqn.2010-10.org.openstack:", Portal("127.0.0.1", 3260))
    secret = names.chap_credentials()
    name = target.target_name(FILE_LUN_ID)
    storage = rts.FileIOStorageObject(name, path, size=1024 * MiB, write_back=False)
    iscsi = rts.Target(rts.FabricModule("iscsi"), name, "create")
    tpg = rts.TPG(iscsi, 1, "create")
    tpg.set_attribute("authentication", "1")
    tpg.set_attribute("generate_node_acls", "0")
    rts.LUN(tpg, 0, storage_object=storage)
    rts.NetworkPortal(tpg, "127.0.0.1", 3260, "create")
    tpg.enable = True
    initiator = brick["properties"]["initiator"]
    target.allow(FILE_LUN_ID, initiator, secret)
    data = target.connection_data(FILE_LUN_ID, initiator, secret)
    return target, data, brick["iscsi"].connect_volume(data)["path"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    hostenv.start_daemons()
    guestenv.make_vg(VG, guestenv.disks()[3])
    work = tempfile.mkdtemp(prefix="evs-bench-attach-")
    brick = hostenv.os_brick_connectors(os.path.join(work, "locks"))
    services = Services(work)
    service = services.start()
    luns, cleanups = {}, []
    for label, backend in (("local volume", "local"), ("lvm_thin LV", "thin")):
        volume = service.request("volume_create", size=1, backend=backend)["id"]
        connector = dict(brick["properties"], protocol="iscsi")
        info = service.manager.attach_volume(volume, connector)
        luns[label] = brick["iscsi"].connect_volume(info["data"])["path"]
        cleanups.append((info["data"], luns[label], volume, connector))
    file_target, file_data, luns["plain file"] = file_lun(brick, work)
    for device in luns.values():  # every block of the region mapped before reading it
        subprocess.run(
            [
                "fio",
                "--name=fill",
                f"--filename={device}",
                "--rw=write",
                "--bs=1M",
                "--direct=1",
                f"--size={REGION}",
            ],
            check=True,
            capture_output=True,
        )
    results: dict = {job: {label: [] for label in luns} for job in JOBS}
    for _ in range(args.rounds):
        for job, (rw, bs, depth) in JOBS.items():
            for label, device in luns.items():
                results[job][label].append(fio_run(device, rw, bs, depth, args.seconds))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    lines = [
        f"{'job':26} {'local volume':>14} {'lvm_thin LV':>14} {'plain file':>14}"
        f" {'local/thin':>11} {'local/file':>11}"
    ]
    for job in JOBS:
        key = "iops" if "4 KiB" in job else "mbps"
        med = {label: statistics.median(r[key] for r in results[job][label]) for label in luns}
        spread = max(
            (max(r[key] for r in rs) - min(r[key] for r in rs)) / med[label]
            for label, rs in results[job].items()
        )
        unit = "IOPS" if key == "iops" else "MB/s"
        lines.append(
            f"{job:26} "
            + " ".join(f"{med[label]:>9,.0f} {unit}" for label in luns)
            + f" {med['local volume'] / med['lvm_thin LV']:>11.2f}"
            + f" {med['local volume'] / med['plain file']:>11.2f}   (spread ±{spread / 2:.0%})"
        )
    lines.append(f"median of {args.rounds} rounds of {args.seconds} s, interleaved; load {load}")
    print("\n".join(lines))
    guestenv.save_result("bench-attach.json", json.dumps(results, indent=2))
    brick["iscsi"].disconnect_volume(file_data, {"path": luns["plain file"]})
    file_target.unexport(FILE_LUN_ID)
    for data, device, volume, connector in cleanups:
        brick["iscsi"].disconnect_volume(data, {"path": device})
        service.manager.detach_volume(volume, connector)
    services.stop()
    hostenv.stop_daemons()
    return 0


if __name__ == "__main__":
    sys.exit(main())
