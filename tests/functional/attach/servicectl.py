"""The volume service the attach tests and the attach benchmark run: in-process or a child.

Backends ``local`` (a pool on the guest's tmpfs) and ``thin`` (LVM on the attach disk's
volume group), configured through a real config file as ``evs-volume --config-file`` reads it.
"""

import os
import subprocess
import sys

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import conf as evs_conf
from evs_driver.service.service import VolumeService
from tests.functional.attach import hostenv

VG = "evs-attach"
IO_TIMEOUT = 5  # seconds: a killed service's requests are retried quickly
DEAD_TIMEOUT = 90


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
            "[local]\nvolume_backend = local\nlocal_pool_capacity_gb = 4\n"
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

    def log_tail(self, lines: int = 40) -> str:
        """The end of the child services' log, for failure messages."""
        try:
            with open(os.path.join(os.path.dirname(self.config), "evs-volume.log")) as f:
                return "\n--- evs-volume.log ---\n" + "".join(f.readlines()[-lines:])
        except OSError:
            return ""

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
