"""Control operations on several devices at one instant: group snapshots, clones, reverts.

Invariants kept here:
- each operation is one transaction (``Transaction.control``) over every member: all of
  them happen or none does, and after a crash the pool shows all or none;
- every member's lock is taken, in id order, before the metadata lock, and held until the
  transaction commits: for a group snapshot the volumes' write locks are held *together*,
  so no write of any member is in flight while the snapshots are taken. A write that
  returned before the call is in every snapshot; one that starts after waits, and is in
  none. That one instant makes the snapshots crash-consistent across the volumes;
- each member costs one reference on a root, as the single operations in ``control`` do.
"""

import contextlib
import time

from evs_driver import exception
from evs_driver.rowstore.control import take_content
from evs_driver.rowstore.devicetable import SNAPSHOT, VOLUME, Device, DeviceInfo
from evs_driver.rowstore.geometry import validate_name, validate_size
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.transaction import Transaction
from evs_driver.rowstore.tree import grow


class GroupOperations:
    """Operations on many devices of one pool in one transaction."""

    def __init__(self, state: PoolState, transaction: Transaction):
        self._state = state
        self._transaction = transaction

    def snapshot_all(self, pairs: list[tuple[str, str]]) -> list[DeviceInfo]:
        """Snapshot each ``(volume, name)`` at one instant: one write barrier for all."""
        sources = [self._volume(volume) for volume, _ in pairs]
        names = self._new_names([name for _, name in pairs])
        _distinct([source.name for source in sources], "volume")
        made = []
        with self._locked(writers=sources), self._transaction.control():
            for source, name in zip(sources, names, strict=True):
                made.append(self._share(source, name, SNAPSHOT, source.size, source.id))
        return [self._info(device) for device in made]

    def clone_all(self, items: list[tuple[str, str, int | None]]) -> list[DeviceInfo]:
        """Create a volume from each ``(source, name, size)`` at one instant; volume sources
        are held still together, as for a group snapshot."""
        origins = [self._state.devices.get(source) for source, _, _ in items]
        names = self._new_names([name for _, name, _ in items])
        sizes = []
        for origin, (_, _, size) in zip(origins, items, strict=True):
            size = origin.size if size is None else size
            validate_size(size)
            if size < origin.size:
                raise exception.InvalidSize(
                    reason=f"new volume size {size} is smaller than {origin.name}'s size "
                    f"{origin.size}"
                )
            sizes.append(size)
        writers = [o for o in origins if o.kind == VOLUME]
        readers = [o for o in origins if o.kind != VOLUME]
        made = []
        with self._locked(writers, readers), self._transaction.control():
            for origin, name, size in zip(origins, names, sizes, strict=True):
                made.append(self._share(origin, name, VOLUME, size, None))
        return [self._info(device) for device in made]

    def revert_all(self, pairs: list[tuple[str, str]]) -> None:
        """Give each ``(volume, snapshot)`` volume the content of that snapshot of its own,
        all in one transaction; every snapshot is kept."""
        targets = [self._volume(volume) for volume, _ in pairs]
        sources = [self._state.devices.get(snapshot) for _, snapshot in pairs]
        _distinct([target.name for target in targets], "volume")
        for target, source in zip(targets, sources, strict=True):
            if source.kind != SNAPSHOT or source.origin != target.id:
                raise exception.InvalidOperation(
                    reason=f"{source.name} is not a snapshot of volume {target.name}"
                )
        with self._locked(targets, sources), self._transaction.control():
            for target, source in zip(targets, sources, strict=True):
                take_content(self._state, target, source)

    # -- helpers -----------------------------------------------------------------------
    def _volume(self, name: str) -> Device:
        device = self._state.devices.get(name)
        if device.kind != VOLUME:
            raise exception.InvalidOperation(reason=f"{name} is a snapshot, not a volume")
        return device

    def _new_names(self, names: list[str]) -> list[str]:
        if not names:
            raise exception.InvalidInput(reason="a group operation needs at least one device")
        for name in names:
            validate_name(name)
        _distinct(names, "new device name")
        return names

    @contextlib.contextmanager
    def _locked(self, writers: list[Device], readers: list[Device] = ()):
        """Every device's lock in id order (writers exclusively, the others shared), each
        checked alive once held."""
        chosen = {d.id: (d, True) for d in readers}
        chosen.update({d.id: (d, False) for d in writers})
        with contextlib.ExitStack() as stack:
            for _id, (device, shared) in sorted(chosen.items()):
                stack.enter_context(device.lock.read() if shared else device.lock.write())
                device.require_alive()
            yield

    def _share(self, origin: Device, name: str, kind: str, size: int, source) -> Device:
        """A new device sharing ``origin``'s whole tree (grown to ``size``): one reference."""
        self._state.devices.require_new_name(name)
        if origin.root:
            self._state.nodes.inc(origin.root)
        root = self._grow(origin.root, origin.size, size)
        return self._state.devices.add(name, kind, size, root, source, origin.mapped, time.time())

    def _grow(self, root: int, size: int, new_size: int) -> int:
        height = self._state.geometry.height
        return grow(self._state.nodes, root, height(size), height(new_size))

    def _info(self, device: Device) -> DeviceInfo:
        return self._state.devices.info(device, self._state.geometry.chunk_size)


def _distinct(names: list[str], what: str) -> None:
    """``InvalidInput`` when a name is given twice."""
    seen = set()
    for name in names:
        if name in seen:
            raise exception.InvalidInput(reason=f"{what} {name} is given twice")
        seen.add(name)
