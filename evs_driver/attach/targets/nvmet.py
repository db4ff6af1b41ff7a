"""NVMe/TCP targets in the kernel's nvmet, written straight into its configfs tree.

A volume gets one subsystem (``nqn.…:volume-<id>``) with ``attr_allow_any_host=0``,
namespace ``nvmet_ns_id`` on its device (the namespace UUID is the volume id, which
os-brick matches as ``vol_uuid``), and one ``allowed_hosts`` link per initiator NQN. All
subsystems share the TCP port ``nvmet_port_id``; the port goes with the last of them.
"""

import contextlib
import os

from evs_driver import exception
from evs_driver.attach import names
from evs_driver.attach.targets.base import Portal, Target, TargetExport

ROOT = "/sys/kernel/config/nvmet"


class NvmetTarget(Target):
    """nvmet subsystems with a host NQN allow-list, on one TCP port."""

    protocol = "nvmeof"
    initiator_key = "nqn"
    modules = ("configfs", "nvmet", "nvmet_tcp")

    def __init__(self, prefix: str, portal: Portal, port_id: int = 1, ns_id: int = 10):
        super().__init__(prefix, portal)
        self.port_id = port_id
        self.ns_id = ns_id

    def describe(self) -> str:
        return "NVMe/TCP targets (nvmet)"

    def check_initiator(self, name: str) -> str:
        return names.check_nqn(name)

    def target_name(self, volume_id: str) -> str:
        return names.target_nqn(self.prefix, volume_id)

    def check_available(self) -> None:
        super().check_available()
        if not os.path.isdir(ROOT):
            raise exception.TargetModuleMissing(
                what=self.describe(), module="configfs mounted at /sys/kernel/config"
            )

    # -- paths ---------------------------------------------------------------------------
    def _subsystem(self, volume_id: str) -> str:
        return f"{ROOT}/subsystems/{self.target_name(volume_id)}"

    def _port(self) -> str:
        return f"{ROOT}/ports/{self.port_id}"

    # -- the contract ----------------------------------------------------------------------
    def export(self, volume_id: str, device_path: str, secret: tuple[str, str] | None) -> None:
        subsystem = self._subsystem(volume_id)
        if os.path.isdir(subsystem):
            return
        nqn = self.target_name(volume_id)
        try:
            os.mkdir(subsystem)
            _write(f"{subsystem}/attr_allow_any_host", "0")
            namespace = f"{subsystem}/namespaces/{self.ns_id}"
            os.mkdir(namespace)
            _write(f"{namespace}/device_path", device_path)
            _write(f"{namespace}/device_uuid", volume_id)
            _write(f"{namespace}/enable", "1")
            self._ensure_port()
            os.symlink(subsystem, f"{self._port()}/subsystems/{nqn}")
        except OSError as exc:
            self.unexport(volume_id)
            raise exception.AttachFailed(
                reason=f"creating NVMe subsystem {nqn}: {exc.strerror or exc}"
            ) from exc

    def _ensure_port(self) -> None:
        port = self._port()
        wanted = {
            "addr_trtype": "tcp",
            "addr_adrfam": "ipv6" if ":" in self.portal.ip else "ipv4",
            "addr_traddr": self.portal.ip,
            "addr_trsvcid": str(self.portal.port),
        }
        if os.path.isdir(port):
            found = {key: _read(f"{port}/{key}") for key in wanted}
            if found != wanted:
                raise exception.AttachFailed(
                    reason=f"nvmet port {self.port_id} is set up as {found}, not {wanted}; "
                    "pick another nvmet_port_id"
                )
            return
        os.mkdir(port)
        try:
            for key, value in wanted.items():
                _write(f"{port}/{key}", value)
        except OSError:
            os.rmdir(port)
            raise

    def allow(self, volume_id: str, initiator: str, secret: tuple[str, str] | None) -> None:
        subsystem = self._subsystem(volume_id)
        if not os.path.isdir(subsystem):
            raise exception.AttachFailed(reason=f"no NVMe subsystem {self.target_name(volume_id)}")
        link = f"{subsystem}/allowed_hosts/{initiator}"
        if os.path.islink(link):
            return
        host = f"{ROOT}/hosts/{initiator}"
        made_host = not os.path.isdir(host)
        try:
            if made_host:
                os.mkdir(host)
            os.symlink(host, link)
        except OSError as exc:
            if made_host:
                with contextlib.suppress(OSError):
                    os.rmdir(host)
            raise exception.AttachFailed(
                reason=f"allowing host {initiator}: {exc.strerror or exc}"
            ) from exc

    def deny(self, volume_id: str, initiator: str) -> None:
        link = f"{self._subsystem(volume_id)}/allowed_hosts/{initiator}"
        if os.path.islink(link):
            os.unlink(link)
        self._drop_unused_host(initiator)

    def _drop_unused_host(self, initiator: str) -> None:
        for subsystem in _listdir(f"{ROOT}/subsystems"):
            if os.path.islink(f"{ROOT}/subsystems/{subsystem}/allowed_hosts/{initiator}"):
                return
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(f"{ROOT}/hosts/{initiator}")

    def unexport(self, volume_id: str) -> None:
        subsystem = self._subsystem(volume_id)
        nqn = self.target_name(volume_id)
        for port in _listdir(f"{ROOT}/ports"):
            link = f"{ROOT}/ports/{port}/subsystems/{nqn}"
            if os.path.islink(link):
                os.unlink(link)
        if os.path.isdir(subsystem):
            hosts = _listdir(f"{subsystem}/allowed_hosts")
            for host in hosts:
                os.unlink(f"{subsystem}/allowed_hosts/{host}")
            for namespace in _listdir(f"{subsystem}/namespaces"):
                with contextlib.suppress(OSError):
                    _write(f"{subsystem}/namespaces/{namespace}/enable", "0")
                os.rmdir(f"{subsystem}/namespaces/{namespace}")
            os.rmdir(subsystem)
            for host in hosts:
                self._drop_unused_host(host)
        port = self._port()
        if os.path.isdir(port) and not _listdir(f"{port}/subsystems"):
            os.rmdir(port)

    def exports(self) -> list[TargetExport]:
        found = []
        for nqn in _listdir(f"{ROOT}/subsystems"):
            volume_id = self.volume_of(nqn)
            if volume_id is None:
                continue
            subsystem = f"{ROOT}/subsystems/{nqn}"
            devices = [
                _read(f"{subsystem}/namespaces/{ns}/device_path")
                for ns in _listdir(f"{subsystem}/namespaces")
            ]
            hosts = tuple(_listdir(f"{subsystem}/allowed_hosts"))
            found.append(TargetExport("nvmeof", volume_id, nqn, ",".join(devices), hosts))
        return found

    def connection_data(
        self, volume_id: str, initiator: str, secret: tuple[str, str] | None
    ) -> dict:
        return {
            "target_nqn": self.target_name(volume_id),
            "vol_uuid": volume_id,
            "portals": [[self.portal.ip, self.portal.port, "tcp"]],
            "ns_id": self.ns_id,
            "host_nqn": initiator,
        }


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
