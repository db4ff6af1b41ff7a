"""The pool's calls that span devices: group snapshots, clones and reverts, and diffs.

A part of the ``Pool`` facade (it inherits this), kept apart so each module stays small:
names in, the layers ``groups`` and ``diff`` do the work.
"""

from evs_driver.blockdev import CHANGED, Extents
from evs_driver.rowstore.devicetable import DeviceInfo, DeviceTable
from evs_driver.rowstore.diff import Differ
from evs_driver.rowstore.groups import GroupOperations
from evs_driver.rowstore.writepath import WritePath


class CrossDeviceCalls:
    """Calls over several devices; the pool sets ``_groups``, ``_differ``, ``_devices``
    and ``_writer``."""

    _groups: GroupOperations
    _differ: Differ
    _devices: DeviceTable
    _writer: WritePath

    def copy_within(self, source: str, target: str, offset: int, length: int) -> None:
        """Copy a range of device ``source`` onto the same range of volume ``target``, the
        chunks inside the kernel (a full clone in one pool)."""
        src, dst = self._devices.get(source), self._devices.get(target)
        src.check_range(offset, length, False)
        dst.check_range(offset, length, True)
        if length:
            self._writer.copy_within(src, dst, offset, length)

    def snapshot_all(self, pairs: list[tuple[str, str]]) -> list[DeviceInfo]:
        """Snapshot each ``(volume, name)`` at one instant (one transaction, one barrier)."""
        return self._groups.snapshot_all(pairs)

    def clone_all(self, items: list[tuple[str, str, int | None]]) -> list[DeviceInfo]:
        """Create a volume from each ``(source, name, size)`` at one instant."""
        return self._groups.clone_all(items)

    def revert_all(self, pairs: list[tuple[str, str]]) -> None:
        """Revert each ``(volume, snapshot)`` pair, all in one transaction."""
        self._groups.revert_all(pairs)

    def diff(
        self,
        old: str | None,
        new: str,
        offset: int = 0,
        length: int | None = None,
        limit: int | None = None,
    ) -> tuple[list[tuple[int, int, str]], int]:
        """Where device ``new`` differs from ``old`` (None: from zeros): ``(offset, length,
        kind)`` runs (``kind`` "data" or "zero": what ``new`` holds there) and the offset
        up to which the answer is complete. The range defaults to the larger device;
        the cost follows what differs and the metadata above it, not the size."""
        old_device = self._devices.get(old) if old is not None else None
        new_device = self._devices.get(new)
        if length is None:
            length = max(new_device.size, old_device.size if old_device else 0) - offset
        if offset < 0 or length < 0:
            raise ValueError(f"bad range {offset}+{length}")
        if not length:
            return [], offset
        return self._differ.diff(old_device, new_device, offset, length, limit)

    def changes(self, old: str, new: str, offset: int, length: int, limit: int) -> Extents:
        """``diff`` as ``BlockDevice.extents``-style runs from ``offset``: ``(length,
        CHANGED)`` where ``new`` differs from ``old``, ``(length, 0)`` where not; at most
        ``limit`` runs, stopping short of the range when there are more."""
        runs, complete = self.diff(old, new, offset, length, max(1, limit // 2))
        answer: Extents = []
        position = offset
        for start, run, _kind in runs:
            if start > position:
                answer.append((start - position, 0))
            answer.append((run, CHANGED))
            position = start + run
        if complete > position:
            answer.append((complete - position, 0))
        return answer
