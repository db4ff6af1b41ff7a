"""iSCSI targets in the kernel's LIO through rtslib-fb (the library Cinder's lioadm uses).

A volume gets one target (``<target_prefix>volume-<id>``) with TPG 1 on the configured
portal, LUN 0 on a block backstore of its device, CHAP required
(``authentication=1``) and no generated ACLs (``generate_node_acls=0``): only an
initiator with a node ACL, holding the volume's CHAP credentials, logs in. Deleting an
ACL ends that initiator's sessions.
"""

import contextlib
import os

from evs_driver import exception
from evs_driver.attach import names
from evs_driver.attach.targets.base import Target, TargetExport

LUN = 0
TPG = 1
DBROOT = "/etc/rtslib-fb-target"


def _rtslib():
    try:
        import rtslib_fb
    except ImportError:
        raise exception.TargetModuleMissing(
            what="iSCSI targets (LIO)",
            module="rtslib-fb (apt-get install python3-rtslib-fb, or pip install rtslib-fb)",
        ) from None
    # LIO keeps persistent reservations and ALUA state there; rtslib refuses to start
    # without it (Debian's rtslib-fb-targetctl service would have made it).
    os.makedirs(getattr(rtslib_fb.RTSRoot, "_preferred_dbroot", DBROOT), 0o700, exist_ok=True)
    return rtslib_fb


def _rtslib_if_present():
    """rtslib, or None where it is missing (then no LIO target of ours can exist either)."""
    try:
        return _rtslib()
    except exception.TargetModuleMissing:
        return None


def _root(rts):
    """LIO's configfs root; an ``AttachFailed`` when LIO cannot be used."""
    try:
        return rts.RTSRoot()
    except (rts.RTSLibError, OSError) as exc:
        raise exception.AttachFailed(reason=f"LIO: {exc}") from exc


class LioTarget(Target):
    """LIO iSCSI targets with CHAP and per-initiator node ACLs."""

    protocol = "iscsi"
    initiator_key = "initiator"
    modules = ("configfs", "target_core_mod", "target_core_iblock", "iscsi_target_mod")

    def describe(self) -> str:
        return "iSCSI targets (LIO)"

    def check_initiator(self, name: str) -> str:
        return names.check_iqn(name)

    def target_name(self, volume_id: str) -> str:
        return names.target_iqn(self.prefix, volume_id)

    def check_available(self) -> None:
        _rtslib()
        super().check_available()

    def _lookup(self, volume_id: str):
        """(target, TPG) of the volume, or (None, None)."""
        rts = _rtslib()
        _root(rts)
        try:
            target = rts.Target(rts.FabricModule("iscsi"), self.target_name(volume_id), "lookup")
            return target, rts.TPG(target, TPG, "lookup")
        except rts.RTSLibNotInCFS:
            return None, None

    def export(self, volume_id: str, device_path: str, secret: tuple[str, str] | None) -> None:
        rts = _rtslib()
        if self._lookup(volume_id)[0] is not None:
            return
        name = self.target_name(volume_id)
        made = []
        try:
            storage = rts.BlockStorageObject(name, dev=device_path)
            made.append(storage)
            target = rts.Target(rts.FabricModule("iscsi"), name, "create")
            made.append(target)
            tpg = rts.TPG(target, TPG, "create")
            tpg.set_attribute("authentication", "1")
            tpg.set_attribute("generate_node_acls", "0")
            tpg.set_attribute("demo_mode_write_protect", "1")
            rts.LUN(tpg, LUN, storage_object=storage)
            rts.NetworkPortal(tpg, _bracketed(self.portal.ip), self.portal.port, "create")
            tpg.enable = True
        except (rts.RTSLibError, OSError) as exc:
            for thing in reversed(made):
                with contextlib.suppress(rts.RTSLibError, OSError):
                    thing.delete()
            raise exception.AttachFailed(reason=f"creating iSCSI target {name}: {exc}") from exc

    def allow(self, volume_id: str, initiator: str, secret: tuple[str, str] | None) -> None:
        rts = _rtslib()
        _target, tpg = self._lookup(volume_id)
        if tpg is None:
            raise exception.AttachFailed(reason=f"no iSCSI target {self.target_name(volume_id)}")
        for acl in tpg.node_acls:
            if acl.node_wwn.lower() == initiator.lower():
                return
        acl = None
        try:
            acl = rts.NodeACL(tpg, initiator, "create")
            acl.chap_userid, acl.chap_password = secret
            rts.MappedLUN(acl, LUN, tpg_lun=LUN)
        except (rts.RTSLibError, OSError) as exc:
            if acl is not None:
                with contextlib.suppress(rts.RTSLibError, OSError):
                    acl.delete()
            raise exception.AttachFailed(reason=f"adding initiator {initiator}: {exc}") from exc

    def deny(self, volume_id: str, initiator: str) -> None:
        rts = _rtslib_if_present()
        if rts is None:
            return
        _target, tpg = self._lookup(volume_id)
        if tpg is None:
            return
        try:
            for acl in tpg.node_acls:
                if acl.node_wwn.lower() == initiator.lower():
                    acl.delete()  # LIO ends the initiator's sessions with it
        except (rts.RTSLibError, OSError) as exc:
            raise exception.AttachFailed(reason=f"removing initiator {initiator}: {exc}") from exc

    def unexport(self, volume_id: str) -> None:
        rts = _rtslib_if_present()
        if rts is None:
            return
        try:
            self._unexport(rts, volume_id)
        except (rts.RTSLibError, OSError) as exc:
            raise exception.AttachFailed(
                reason=f"removing iSCSI target {self.target_name(volume_id)}: {exc}"
            ) from exc

    def _unexport(self, rts, volume_id: str) -> None:
        target, tpg = self._lookup(volume_id)
        storage = None
        if tpg is not None:
            for lun in tpg.luns:
                storage = lun.storage_object
        if target is not None:
            target.delete()
        name = self.target_name(volume_id)
        for candidate in _root(rts).storage_objects:
            if candidate.name == name or candidate is storage:
                candidate.delete()

    def exports(self) -> list[TargetExport]:
        rts = _rtslib_if_present()
        found = []
        if rts is None:
            return found
        try:
            targets = list(_root(rts).targets)
        except exception.AttachFailed:
            return found  # no LIO on this host: no targets either
        for target in targets:
            volume_id = self.volume_of(target.wwn)
            if target.fabric_module.name != "iscsi" or volume_id is None:
                continue
            device, initiators = "", []
            for tpg in target.tpgs:
                for lun in tpg.luns:
                    device = lun.storage_object.udev_path
                initiators += [acl.node_wwn for acl in tpg.node_acls]
            found.append(TargetExport("iscsi", volume_id, target.wwn, device, tuple(initiators)))
        return found

    def connection_data(
        self, volume_id: str, initiator: str, secret: tuple[str, str] | None
    ) -> dict:
        username, password = secret
        return {
            "target_discovered": False,
            "target_iqn": self.target_name(volume_id),
            "target_portal": f"{_bracketed(self.portal.ip)}:{self.portal.port}",
            "target_lun": LUN,
            "volume_id": volume_id,
            "auth_method": "CHAP",
            "auth_username": username,
            "auth_password": password,
            "encrypted": False,
        }


def _bracketed(ip: str) -> str:
    """IPv6 addresses in brackets, as rtslib and portals want them."""
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip
