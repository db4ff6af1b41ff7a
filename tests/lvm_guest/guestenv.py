"""Helpers for tests that run inside the LVM guest: scratch volume groups and backends.

The harness (``run.py``) sets ``EVS_LVM_GUEST=1`` and lists its blank disks in
``EVS_LVM_DISKS``; anywhere else these tests skip, since they need root, device-mapper
and disks they may wipe.
"""

import os
import subprocess

from oslo_config import cfg

from evs_driver.backends.lvm_thin import LvmThinBackend
from evs_driver.conf import BackendConf, register_opts

SKIP_REASON = "needs real LVM: runs only inside the QEMU guest of `python tests/lvm_guest/run.py`"


def in_guest() -> bool:
    """True inside the harness's guest."""
    return os.environ.get("EVS_LVM_GUEST") == "1"


def disks() -> list[str]:
    """The guest's blank disks, in order (the first is the largest)."""
    return [d for d in os.environ.get("EVS_LVM_DISKS", "").split(",") if d]


def lvm(*args: str) -> str:
    """Run an LVM command directly (test setup and inspection), return stdout."""
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def lv_names(vg: str) -> set[str]:
    """Names of the visible LVs of ``vg``."""
    out = lvm("lvs", "--noheadings", "-o", "lv_name", vg)
    return {line.strip() for line in out.splitlines() if line.strip()}


def make_vg(name: str, disk: str) -> None:
    """Create volume group ``name`` on the whole of ``disk`` (wiping it)."""
    lvm("pvcreate", "-ff", "-y", "-q", disk)
    lvm("vgcreate", "-q", name, disk)


def remove_vg(name: str, disk: str) -> None:
    """Remove volume group ``name`` with all its LVs, and the PV label of ``disk``."""
    lvm("vgremove", "-ff", "-y", name)
    lvm("pvremove", "-ff", "-y", disk)


def backend_conf(name: str, **options) -> BackendConf:
    """Backend group ``name`` of a fresh oslo.config ``ConfigOpts``, with ``options`` set."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="evs_driver_tests", default_config_files=[], default_config_dirs=[])
    group = BackendConf(conf, name)
    for key, value in options.items():
        conf.set_override(key, value, group=name)
    return group


def make_backend(vg: str, pool: str, name: str = "lvm", **options) -> LvmThinBackend:
    """An ``LvmThinBackend`` configured through real oslo.config options; not yet set up."""
    settings = {"volume_backend": "lvm_thin", "lvm_volume_group": vg, "lvm_thin_pool": pool}
    return LvmThinBackend(backend_conf(name, **{**settings, **options}), name)


def save_result(name: str, text: str) -> None:
    """Keep ``text`` in the run share (``.cache/lvm-guest/run/results`` on the host)."""
    directory = os.environ.get("EVS_LVM_RESULTS")
    if directory:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
