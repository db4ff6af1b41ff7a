"""Map catalog ids to LV names and back, within LVM's naming rules.

An LV name is ``<prefix><id>``; LVM allows ``[A-Za-z0-9+_.-]``, no leading ``-``, at most
127 characters, and the device-mapper name ``<vg>-<lv>`` (dashes doubled) must fit in
127 characters too. Ids that cannot make such a name are refused before any command runs.
"""

import re

from evs_driver import exception

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]*$")
# LVM rejects LV names holding the suffixes of its own hidden sub-LVs.
_RESERVED = (
    "_cdata",
    "_cmeta",
    "_corig",
    "_iorig",
    "_mimage",
    "_mlog",
    "_pmspare",
    "_rimage",
    "_rmeta",
    "_tdata",
    "_tmeta",
    "_vdata",
    "_vorigin",
    "_wcorig",
)
_RESERVED_STARTS = ("snapshot", "pvmove")
DM_NAME_MAX = 127
REVERT_PREFIX = "evs-revert-"
TAG_ORIGIN = "evs-origin"  # on a snapshot: the id of the volume it was taken of
TAG_REVERT = "evs-revert"  # on an LV being swapped in by a revert: the volume id


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name LVM gives ``vg/lv``."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


class Naming:
    """LV names of one backend's volumes and snapshots."""

    def __init__(self, vg: str, volume_prefix: str, snapshot_prefix: str):
        if volume_prefix.startswith(snapshot_prefix) or snapshot_prefix.startswith(volume_prefix):
            raise exception.ConfigError(
                reason=f"lvm_volume_prefix {volume_prefix!r} and lvm_snapshot_prefix "
                f"{snapshot_prefix!r} must not be prefixes of each other"
            )
        for prefix in (volume_prefix, snapshot_prefix):
            if prefix.startswith(_RESERVED_STARTS) or prefix.startswith(REVERT_PREFIX):
                raise exception.ConfigError(
                    reason=f"LV name prefix {prefix!r} is reserved (by LVM: snapshot*, pvmove*; "
                    f"by this backend: {REVERT_PREFIX}*)"
                )
        self.vg = vg
        self.volume_prefix = volume_prefix
        self.snapshot_prefix = snapshot_prefix

    def _name(self, prefix: str, device_id: str) -> str:
        name = prefix + device_id
        if not _ID.match(device_id) or any(part in name for part in _RESERVED):
            raise exception.InvalidInput(
                reason=f"id {device_id!r} cannot name an LV: use letters, digits and + _ . -"
            )
        longest = max(name, REVERT_PREFIX + device_id, key=len)
        if len(dm_name(self.vg, longest)) > DM_NAME_MAX:
            raise exception.InvalidInput(
                reason=f"id {device_id!r} is too long for an LV name in volume group {self.vg}"
            )
        return name

    def volume(self, volume_id: str) -> str:
        """The LV name of a volume."""
        return self._name(self.volume_prefix, volume_id)

    def snapshot(self, snapshot_id: str) -> str:
        """The LV name of a snapshot."""
        return self._name(self.snapshot_prefix, snapshot_id)

    def revert_temp(self, volume_id: str) -> str:
        """The LV name that a revert builds the volume's new content under."""
        self.volume(volume_id)
        return REVERT_PREFIX + volume_id

    def kind_of(self, lv_name: str) -> tuple[str, str] | None:
        """``('volume'|'snapshot', id)`` for an LV this backend named, else None."""
        for kind, prefix in (("volume", self.volume_prefix), ("snapshot", self.snapshot_prefix)):
            if lv_name.startswith(prefix) and len(lv_name) > len(prefix):
                return kind, lv_name[len(prefix) :]
        return None

    def path(self, lv_name: str) -> str:
        """The device node of an active LV."""
        return f"/dev/{self.vg}/{lv_name}"
