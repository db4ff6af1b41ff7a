"""``BlockAttach``: a volume as a block device on this host and behind iSCSI / NVMe-oF targets.

What an ``EVSDriver`` does to attach outside Cinder (under Cinder, Cinder's own target
drivers take the place of ``evs_driver.attach.targets``). The volume's device is its LV
for ``lvm_thin`` and a kernel NBD device connected to the service's own NBD export for
``local``; a target exports that device to the initiators it is told about, with the
volume's CHAP credentials for iSCSI. Every step can be repeated, which is what restores
attachments after a restart.
"""

from oslo_log import log as logging

from evs_driver import exception
from evs_driver.attach import names
from evs_driver.attach.connectors import host_name
from evs_driver.attach.devices import VolumeDevices
from evs_driver.attach.targets.base import Portal, Target
from evs_driver.attach.targets.lio import LioTarget
from evs_driver.attach.targets.nvmet import NvmetTarget
from evs_driver.conf import backend_option_error
from evs_driver.conf.attach_opts import HELPER_PROTOCOLS

LOG = logging.getLogger(__name__)
TARGET_PROTOCOLS = ("iscsi", "nvmeof")
PROTOCOLS = (*TARGET_PROTOCOLS, "local")
STANDARD_PORTS = {"iscsi": 3260, "nvmeof": 4420}
HELPER_OF = {"lioadm": "iscsi", "nvmet": "nvmeof"}


class BlockAttach:
    """Block devices and targets of one backend's attached volumes."""

    def __init__(self, conf, backend, exporter):
        self.conf = conf
        helper = conf.target_helper
        if conf.target_protocol not in HELPER_PROTOCOLS[helper]:
            raise backend_option_error(
                conf,
                "target_protocol",
                f"{conf.target_protocol} does not go with target_helper = {helper} "
                f"(use {' or '.join(HELPER_PROTOCOLS[helper])})",
            )
        self.default_protocol = HELPER_OF[helper]
        self.devices = VolumeDevices(conf, backend, exporter)

    # -- what is asked ---------------------------------------------------------------------
    def target(self, protocol: str) -> Target:
        """The target helper of ``protocol`` with this backend's portal."""
        default = protocol == self.default_protocol
        portal = Portal(
            self.conf.target_ip_address,
            self.conf.target_port if default else STANDARD_PORTS[protocol],
        )
        if protocol == "iscsi":
            return LioTarget(self.conf.target_prefix, portal)
        return NvmetTarget(
            self.conf.target_prefix, portal, self.conf.nvmet_port_id, self.conf.nvmet_ns_id
        )

    def protocol_of(self, connector: dict) -> str | None:
        """The block protocol ``connector`` asks for; None for the NBD path of old."""
        asked = connector.get("protocol")
        if asked == "nbd":
            return None
        if asked == "default":
            return self.default_protocol
        if asked:
            if asked not in PROTOCOLS:
                raise exception.UnknownProtocol(
                    protocol=str(asked)[:64], choices=", ".join((*PROTOCOLS, "nbd"))
                )
            return asked
        if connector.get(self.target(self.default_protocol).initiator_key):
            return self.default_protocol
        return None

    def initiator_of(self, protocol: str, connector: dict) -> str:
        """The checked initiator name of ``connector`` for ``protocol`` (the host for local)."""
        if protocol == "local":
            host = connector.get("host") or host_name()
            if host != host_name():
                raise exception.InvalidInput(
                    reason=f"a local attach gives a device path on this host ({host_name()}), "
                    f"not on {host}; attach over iscsi or nvmeof instead"
                )
            return host
        target = self.target(protocol)
        name = connector.get(target.initiator_key)
        if not name:
            raise exception.InvalidInput(
                reason=f"a {protocol} attach needs the initiator's name (connector key "
                f"{target.initiator_key!r}, --initiator)"
            )
        return target.check_initiator(name)

    # -- the Cinder-style steps ----------------------------------------------------------------
    def create_export(self, volume, protocol: str) -> dict:
        """Make the volume's device and target; returns the model update (CHAP credentials).

        On failure the caller removes what it no longer needs (``remove_export``).
        """
        update = {}
        if protocol == "iscsi" and not _secret(volume):
            user, password = names.chap_credentials()
            update["provider_auth"] = f"CHAP {user} {password}"
        target = self.target(protocol) if protocol in TARGET_PROTOCOLS else None
        if target is not None:
            target.check_available()
        device = self.devices.device_path(volume.id)
        if target is not None:
            secret = _secret(volume) or _secret_of(update.get("provider_auth"))
            for found in target.exports():
                if found.volume_id == volume.id and found.device_path not in ("", device):
                    target.unexport(volume.id)  # made on a device that is gone: make it anew
            target.export(volume.id, device, secret)
        return update

    def initialize_connection(self, volume, protocol: str, initiator: str) -> dict:
        """Let ``initiator`` in and return os-brick's connection info."""
        if protocol == "local":
            data = {"device_path": self.devices.device_path(volume.id)}
        else:
            target = self.target(protocol)
            target.allow(volume.id, initiator, _secret(volume))
            data = target.connection_data(volume.id, initiator, _secret(volume))
        data.update(volume_id=volume.id, access_mode="rw")
        return {"driver_volume_type": protocol, "data": data}

    def terminate_connection(self, volume, protocol: str, initiator: str) -> None:
        """Lock ``initiator`` out; the others keep their access."""
        if protocol in TARGET_PROTOCOLS:
            self.target(protocol).deny(volume.id, initiator)

    def remove_export(self, volume, protocols, release_device: bool) -> None:
        """Remove the volume's targets of ``protocols``, and its device when asked."""
        for protocol in protocols:
            if protocol in TARGET_PROTOCOLS:
                self.target(protocol).unexport(volume.id)
        if release_device:
            self.devices.release(volume.id)

    def exports(self) -> list[dict]:
        """Every kernel NBD device and target of ours on this host."""
        rows = self.devices.listing()
        for protocol in TARGET_PROTOCOLS:
            for found in self.target(protocol).exports():
                rows.append(
                    {
                        "protocol": protocol,
                        "volume": found.volume_id,
                        "target": found.target,
                        "device": found.device_path,
                        "initiators": list(found.initiators),
                    }
                )
        return rows


def _secret_of(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    method, user, password = auth.split(" ", 2)
    return (user, password) if method == "CHAP" else None


def _secret(volume) -> tuple[str, str] | None:
    return _secret_of(getattr(volume, "provider_auth", None))
