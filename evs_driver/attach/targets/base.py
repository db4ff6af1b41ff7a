"""The contract of a target helper (the standalone counterpart of ``cinder.volume.targets``).

A target exports one block device per volume and lets in exactly the initiators it was
told about: nothing is exported to everyone. Every method is idempotent, and one that
fails leaves nothing it made behind, so a caller can retry or roll back by calling the
inverse. Names are derived from the volume id, so a restarted service finds its targets.
"""

import abc
import dataclasses
import os
import shutil
import subprocess

from evs_driver import exception


@dataclasses.dataclass(frozen=True)
class Portal:
    """Where a target listens."""

    ip: str
    port: int


@dataclasses.dataclass(frozen=True)
class TargetExport:
    """One volume's target as the kernel holds it, for ``evs export list``."""

    protocol: str
    volume_id: str
    target: str
    device_path: str
    initiators: tuple[str, ...]


class Target(abc.ABC):
    """Exports volumes' block devices over one protocol."""

    #: ``driver_volume_type`` of the connection info (what os-brick's connector factory takes)
    protocol: str = ""
    #: the connector key holding the initiator's name
    initiator_key: str = ""
    #: kernel modules the target needs, checked (and loaded when modprobe can) first
    modules: tuple[str, ...] = ()

    def __init__(self, prefix: str, portal: Portal):
        self.prefix = prefix
        self.portal = portal

    @abc.abstractmethod
    def check_initiator(self, name: str) -> str:
        """``name`` when it is a valid initiator name for this protocol, else ``InvalidInitiator``."""

    @abc.abstractmethod
    def target_name(self, volume_id: str) -> str:
        """The IQN or NQN of the volume's target."""

    def check_available(self) -> None:
        """Raise ``TargetModuleMissing`` when a kernel module is missing and cannot be loaded."""
        for module in self.modules:
            if os.path.isdir(f"/sys/module/{module}"):
                continue
            if shutil.which("modprobe"):
                subprocess.run(["modprobe", module], capture_output=True, check=False)
            if not os.path.isdir(f"/sys/module/{module}"):
                raise exception.TargetModuleMissing(what=self.describe(), module=module)

    @abc.abstractmethod
    def describe(self) -> str:
        """What this target is, for messages."""

    @abc.abstractmethod
    def export(self, volume_id: str, device_path: str, secret: tuple[str, str] | None) -> None:
        """Make the volume's target on ``device_path``, with no initiator allowed yet."""

    @abc.abstractmethod
    def allow(self, volume_id: str, initiator: str, secret: tuple[str, str] | None) -> None:
        """Let ``initiator`` in (with the volume's CHAP ``secret`` where the protocol has one)."""

    @abc.abstractmethod
    def deny(self, volume_id: str, initiator: str) -> None:
        """Lock ``initiator`` out; the others keep their access."""

    @abc.abstractmethod
    def unexport(self, volume_id: str) -> None:
        """Remove the volume's target; one not there is fine."""

    @abc.abstractmethod
    def exports(self) -> list[TargetExport]:
        """Every target of this prefix the kernel holds."""

    @abc.abstractmethod
    def connection_data(
        self, volume_id: str, initiator: str, secret: tuple[str, str] | None
    ) -> dict:
        """The ``data`` of the connection info os-brick's connector takes."""

    def volume_of(self, target: str) -> str | None:
        """The volume id in one of our target names, None for a foreign target."""
        stem = self.target_name("")
        return target[len(stem) :] if target.startswith(stem) and len(target) > len(stem) else None
