"""Control operations: create, snapshot, clone, revert, extend and delete devices.

Invariants kept here:
- each operation is one transaction (``Transaction.control``): it is durable when it
  returns, and has had no effect when it raises;
- a snapshot, clone or revert shares a whole tree with one reference: O(1) whatever was
  written; a delete drops one root and leaves the rest to the collector;
- an operation takes the device locks it needs in id order before the metadata lock, and a
  snapshot holds its volume's write lock (the write barrier: no write of it in flight).
"""

import contextlib
import time

from evs_driver import exception
from evs_driver.rowstore.devicetable import SNAPSHOT, VOLUME, Device, DeviceInfo
from evs_driver.rowstore.geometry import validate_name, validate_size
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.transaction import Transaction
from evs_driver.rowstore.tree import grow


class ControlOperations:
    """The control operations of one pool."""

    def __init__(self, state: PoolState, transaction: Transaction):
        self._state = state
        self._transaction = transaction

    def _info(self, device: Device) -> DeviceInfo:
        return self._state.devices.info(device, self._state.geometry.chunk_size)

    def _grow(self, root: int, size: int, new_size: int) -> int:
        height = self._state.geometry.height
        return grow(self._state.nodes, root, height(size), height(new_size))

    def create_volume(self, name: str, size: int) -> DeviceInfo:
        """Create an empty thin volume of ``size`` bytes."""
        validate_name(name)
        validate_size(size)
        with self._transaction.control():
            device = self._state.devices.add(name, VOLUME, size, 0, None, 0, time.time())
        return self._info(device)

    def create_snapshot(self, volume: str, name: str) -> DeviceInfo:
        """Share the volume's current tree under a read-only name: O(1), no data copied."""
        validate_name(name)
        source = self._state.devices.get(volume)
        if source.kind != VOLUME:
            raise exception.InvalidOperation(reason=f"{volume} is a snapshot; snapshot a volume")
        with source.lock.write(), self._transaction.control():
            source.require_alive()
            self._state.devices.require_new_name(name)
            if source.root:
                self._state.nodes.inc(source.root)
            device = self._state.devices.add(
                name, SNAPSHOT, source.size, source.root, source.id, source.mapped, time.time()
            )
        return self._info(device)

    def clone(self, source: str, name: str, size: int | None = None) -> DeviceInfo:
        """Create a volume sharing every chunk of ``source`` (a snapshot or a volume)."""
        validate_name(name)
        origin = self._state.devices.get(source)
        size = origin.size if size is None else size
        validate_size(size)
        if size < origin.size:
            raise exception.InvalidSize(
                reason=f"new volume size {size} is smaller than {source}'s size {origin.size}"
            )
        guard = origin.lock.write() if origin.kind == VOLUME else origin.lock.read()
        with guard, self._transaction.control():
            origin.require_alive()
            self._state.devices.require_new_name(name)
            if origin.root:
                self._state.nodes.inc(origin.root)
            root = self._grow(origin.root, origin.size, size)
            device = self._state.devices.add(
                name, VOLUME, size, root, None, origin.mapped, time.time()
            )
        return self._info(device)

    def revert(self, volume: str, snapshot: str) -> None:
        """Give ``volume`` the content of one of its snapshots; every snapshot is kept."""
        target = self._state.devices.get(volume)
        source = self._state.devices.get(snapshot)
        if target.kind != VOLUME:
            raise exception.InvalidOperation(reason=f"{volume} is not a volume")
        if source.kind != SNAPSHOT or source.origin != target.id:
            raise exception.InvalidOperation(
                reason=f"{snapshot} is not a snapshot of volume {volume}"
            )
        first, second = sorted((target, source), key=lambda d: d.id)
        with _ordered(first, second, target), self._transaction.control():
            target.require_alive()
            source.require_alive()
            take_content(self._state, target, source)

    def extend(self, name: str, size: int) -> None:
        """Grow a volume to ``size`` bytes; new space reads as zeros."""
        validate_size(size)
        device = self._state.devices.get(name)
        if device.kind != VOLUME:
            raise exception.InvalidOperation(
                reason=f"{name} is a snapshot; snapshots keep their size"
            )
        with device.lock.write(), self._transaction.control():
            device.require_alive()
            if size < device.size:
                raise exception.InvalidSize(
                    reason=f"volumes never shrink: {name} is {device.size} bytes, asked for {size}"
                )
            device.root = self._grow(device.root, device.size, size)
            device.size = size
            self._state.devices.touch(device)

    def delete(self, name: str) -> None:
        """Remove a volume or snapshot; its exclusive chunks are freed by the collector."""
        device = self._state.devices.get(name)
        with device.lock.write(), self._transaction.control():
            device.require_alive()
            if device.root:
                self._state.nodes.drop(device.root)
            self._state.devices.remove(device)


def take_content(state: PoolState, target: Device, source: Device) -> None:
    """Point ``target`` at ``source``'s whole tree (grown to its own size), dropping its
    old one: a revert's one reference. Call in a transaction, with both devices locked."""
    old_root = target.root
    if source.root:
        state.nodes.inc(source.root)
    height = state.geometry.height
    target.root = grow(state.nodes, source.root, height(source.size), height(target.size))
    target.mapped = source.mapped
    if old_root:
        state.nodes.drop(old_root)
    state.devices.touch(target)


def _ordered(first: Device, second: Device, writer: Device) -> contextlib.ExitStack:
    """Lock two devices in id order (no deadlock): the writer exclusively, the other shared."""
    stack = contextlib.ExitStack()
    for device in (first, second):
        stack.enter_context(device.lock.write() if device is writer else device.lock.read())
    return stack
