"""Fixtures of the attach tests: a volume service with a local and an lvm_thin backend.

They run only in the QEMU guest (`tox -e lvm`), where the kernel has nbd, LIO and nvmet,
and the initiators (open-iscsi, nvme-cli, os-brick) are real.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import conf as evs_conf
from evs_driver.service.service import VolumeService
from tests.functional.attach import hostenv
from tests.lvm_guest import guestenv

VG = "evs-attach"
IO_TIMEOUT = 5  # seconds: a killed service's requests are retried quickly
DEAD_TIMEOUT = 90


@pytest.fixture(scope="session")
def attach_host():
    """Daemons up, os-brick set up, and a volume group on the guest's fourth disk."""
    if not guestenv.in_guest():
        pytest.skip(guestenv.SKIP_REASON)
    hostenv.start_daemons()
    disk = guestenv.disks()[3]
    guestenv.make_vg(VG, disk)
    work = tempfile.mkdtemp(prefix="evs-attach-")
    connectors = hostenv.os_brick_connectors(os.path.join(work, "locks"))
    yield {"work": work, **connectors}
    hostenv.stop_daemons()
    guestenv.remove_vg(VG, disk)
    shutil.rmtree(work, ignore_errors=True)


def write_config(path: str, state_path: str, **extra) -> None:
    """The service's config file: backend ``local`` (a pool on tmpfs) and ``thin`` (LVM)."""
    defaults = {
        "nbd_io_timeout": IO_TIMEOUT,
        "nbd_dead_connection_timeout": DEAD_TIMEOUT,
        "target_ip_address": "127.0.0.1",
    }
    options = "".join(f"{k} = {v}\n" for k, v in {**defaults, **extra}.items())
    with open(path, "w") as f:
        f.write(
            f"[DEFAULT]\nstate_path = {state_path}\nenabled_backends = local,thin\n"
            f"[backend_defaults]\n{options}"
            "[local]\nvolume_backend = local\nlocal_pool_capacity_gb = 8\n"
            f"[thin]\nvolume_backend = lvm_thin\nlvm_volume_group = {VG}\n"
            "lvm_thin_pool = pool\nlvm_create_thin_pool = true\nlvm_thin_pool_size_percent = 60\n"
        )


def load_conf(path: str) -> cfg.ConfigOpts:
    """The parsed config of ``path``, as ``evs-volume --config-file path`` reads it."""
    conf = cfg.ConfigOpts()
    evs_conf.register_opts(conf)
    logging.register_options(conf)
    conf(["--config-file", path], project="evs_driver", default_config_files=[])
    return conf


class Services:
    """Starts the volume service in this process, or as a real ``evs-volume`` child."""

    def __init__(self, work: str):
        self.state_path = os.path.join(work, "state")
        self.config = os.path.join(work, "evs.conf")
        self.configure()
        self.current: VolumeService | None = None
        self.child: subprocess.Popen | None = None

    def configure(self, **options) -> None:
        """(Re)write the config file with these backend options over the defaults."""
        write_config(self.config, self.state_path, **options)

    def start(self) -> VolumeService:
        """The service in this process (restoring recorded attachments)."""
        self.current = VolumeService(load_conf(self.config))
        self.current.start()
        return self.current

    def stop(self) -> None:
        """Close the in-process service (attachments stay; devices wait for the next one)."""
        if self.current is not None:
            self.current.close()
            self.current = None

    def start_child(self) -> subprocess.Popen:
        """``evs-volume`` in its own process; returns once its control socket answers."""
        with open(os.path.join(os.path.dirname(self.config), "evs-volume.log"), "ab") as log:
            self.child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "evs_driver.cmd.volume_service",
                    "--config-file",
                    self.config,
                ],
                stdout=log,
                stderr=log,
            )
        sock = os.path.join(self.state_path, "evs-volume.sock")
        hostenv.wait_for(
            lambda: os.path.exists(sock) or self.child.poll() is not None,
            120,
            "evs-volume to listen",
        )
        assert self.child.poll() is None, "evs-volume exited at start (see evs-volume.log)"
        return self.child


@pytest.fixture
def services(attach_host, tmp_path):
    """A fresh state path; whatever the test leaves attached is detached at the end."""
    found = Services(str(tmp_path))
    yield found
    if found.child is not None and found.child.poll() is None:
        found.child.terminate()
        found.child.wait(60)
    if found.current is None:
        found.start()
    manager = found.current.manager
    for volume in manager.list_volumes():
        if volume.status == "in-use":
            manager.detach_volume(volume.id, {})
    found.stop()


@pytest.fixture
def service(services):
    """The volume service, in this process."""
    return services.start()
