"""``VolumeDevices``: each attached volume as a block device on this host.

An ``lvm_thin`` volume already is one (its LV). A ``local`` volume becomes one through the
kernel's NBD client, connected to the service's own NBD export of it: this object makes,
finds again (after a restart), reconnects and removes those ``/dev/nbdN`` devices. It
serves both the standalone targets and Cinder's target drivers.
"""

import subprocess

from oslo_log import log as logging

from evs_driver import exception
from evs_driver.attach import nbdkernel

LOG = logging.getLogger(__name__)


class VolumeDevices:
    """Block devices of one backend's volumes."""

    def __init__(self, conf, backend, exporter):
        self.backend = backend
        self.exporter = exporter
        self.kernel = nbdkernel.KernelNBD(
            conf.nbd_io_timeout, conf.nbd_dead_connection_timeout, conf.nbd_max_devices
        )

    def _own_path(self, volume_id: str) -> str | None:
        return self.backend.connection_properties(volume_id).get("device_path")

    def device_path(self, volume_id: str) -> str:
        """The volume's block device, connected (or reconnected) as needed."""
        path = self._own_path(volume_id)
        if path:
            return path
        info = self.exporter.export(self.backend, volume_id, read_only=False)
        try:
            self.kernel.check()
            found = self.kernel.find(volume_id)
            if found is None:
                index = self.kernel.connect(info["socket"], info["export_name"])
                LOG.info("Connected %s to /dev/nbd%d", volume_id, index)
            else:
                index, _configured = found
                if not self._connections(volume_id):
                    # Made by a service that is gone: its connection died with it.
                    self.kernel.reconnect(index, info["socket"], info["export_name"])
                    LOG.info("Reconnected /dev/nbd%d to %s", index, volume_id)
            nbdkernel.wait_for_node(index)
        except BaseException:
            if self.kernel.find(volume_id) is None:
                self.exporter.unexport(volume_id)  # nothing half-made
            raise
        return nbdkernel.device_path(index)

    def _connections(self, volume_id: str) -> int:
        """Connections to the volume's NBD export in this process (the kernel's, once made)."""
        for export in self.exporter.exports():
            if export["export_name"] == volume_id:
                return export["connections"]
        return 0

    def release(self, volume_id: str) -> None:
        """Flush and disconnect the volume's kernel NBD device, then end its NBD export."""
        if self._own_path(volume_id):
            return
        try:
            found = self.kernel.find(volume_id)
        except exception.TargetModuleMissing:
            found = None  # no kernel NBD client: no device was made
        if found is not None:
            index, connected = found
            if connected:
                self._flush(volume_id, nbdkernel.device_path(index))
            self.kernel.disconnect(index)
            LOG.info("Disconnected /dev/nbd%d from %s", index, volume_id)
        self.exporter.unexport(volume_id)

    def _flush(self, volume_id: str, path: str) -> None:
        """A FLUSH through the device, so what the initiators wrote is durable before release.

        Done by a child process (coreutils ``sync FILE`` is an fsync): under Cinder's eventlet
        the NBD server that must answer the FLUSH runs in this process, and an fsync here
        would block it, and so itself, until the kernel gives up.
        """
        timeout = self.kernel.io_timeout + self.kernel.dead_connection_timeout
        try:
            subprocess.run(["sync", path], check=True, capture_output=True, timeout=timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace").strip()
            raise exception.DetachFailed(
                reason=f"flushing {path} of volume {volume_id} before its release: {detail}"
            ) from exc

    def listing(self) -> list[dict]:
        """Our kernel NBD devices, for ``evs export list``."""
        rows = []
        try:
            devices = self.kernel.connected()
        except exception.TargetModuleMissing:
            return rows  # no kernel NBD client here: no devices either
        live = {e["export_name"]: e["connections"] for e in self.exporter.exports()}
        for index in sorted(devices):
            volume_id = self.kernel.identifier(index)
            if volume_id is not None:
                path = nbdkernel.device_path(index)
                state = (
                    "connected" if live.get(volume_id) else "waiting for the service to reconnect"
                )
                rows.append(
                    {"protocol": "nbd", "volume": volume_id, "target": path, "device": path}
                    | {"initiators": [], "state": state}
                )
        return rows
