"""The device table: every volume and snapshot of a pool, by name and by id.

Invariants kept here:
- names are unique, ids are never reused (``next_id`` only grows), and a deleted device
  object is marked so that operations that found it before the delete fail cleanly;
- every change to a device is handed to the transaction through ``changes`` until the
  commit that stores it calls ``committed``.
"""

import dataclasses

from evs_driver import exception
from evs_driver.rowstore.rwlock import RWLock

VOLUME, SNAPSHOT = "volume", "snapshot"


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What a caller may know of a volume or snapshot."""

    name: str
    kind: str
    size: int
    origin: str | None
    mapped_bytes: int
    created_at: float


class Device:
    """One volume or snapshot as the engine keeps it; ``lock`` serializes its writers."""

    __slots__ = (
        "id",
        "name",
        "kind",
        "size",
        "root",
        "origin",
        "mapped",
        "created_at",
        "lock",
        "deleted",
        "remapping",
    )

    def __init__(self, id, name, kind, size, root, origin, mapped, created_at):
        self.id, self.name, self.kind, self.size = id, name, kind, size
        self.root, self.origin, self.mapped, self.created_at = root, origin, mapped, created_at
        self.lock = RWLock()
        self.deleted = False
        #: The last write that took the device alone redirected (a hint: the next one
        #: probably will too).
        self.remapping = False

    def row(self) -> tuple:
        """The device as the metadata stores it."""
        return (
            self.id,
            self.name,
            self.kind,
            self.size,
            self.root,
            self.origin,
            self.mapped,
            self.created_at,
        )

    def check_range(self, offset: int, length: int, writing: bool) -> None:
        """Refuse I/O outside the device, or a write to a snapshot."""
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
            raise exception.InvalidInput(
                reason=f"offset {offset!r} and length {length!r} must be non-negative integers"
            )
        if offset + length > self.size:
            raise exception.OutOfRange(
                device=self.name, offset=offset, length=length, size=self.size
            )
        if writing and self.kind != VOLUME:
            raise exception.ReadOnlyDevice(name=self.name)

    def require_alive(self) -> None:
        """``NotFound`` once the device has been deleted."""
        if self.deleted:
            raise exception.NotFound(kind="Device", name=self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class SavePoint:
    """The table as it was, to return to when a control operation fails."""

    by_name: dict
    next_id: int
    states: dict


class DeviceTable:
    """Devices by name and id, with the set changed since the last commit."""

    def __init__(self, rows: list[tuple], next_id: int):
        self._by_name: dict[str, Device] = {}
        self._by_id: dict[int, Device] = {}
        for row in rows:
            self._register(Device(*row))
        self.next_id = next_id
        self._changed: set[int] = set()
        self._deleted: set[int] = set()

    def _register(self, device: Device) -> None:
        self._by_name[device.name] = device
        self._by_id[device.id] = device

    # -- lookup ---------------------------------------------------------------------
    def get(self, name: str) -> Device:
        """The device called ``name``; ``NotFound`` when there is none."""
        device = self._by_name.get(name)
        if device is None:
            raise exception.NotFound(kind="Device", name=name)
        return device

    def exists(self, name: str) -> bool:
        """True when a device of this name exists."""
        return name in self._by_name

    def all(self) -> list[Device]:
        """Every device, oldest first."""
        return sorted(self._by_name.values(), key=lambda d: d.id)

    def info(self, device: Device, chunk_size: int) -> DeviceInfo:
        """What callers see of ``device``."""
        origin = self._by_id.get(device.origin) if device.origin else None
        return DeviceInfo(
            device.name,
            device.kind,
            device.size,
            origin.name if origin else None,
            device.mapped * chunk_size,
            device.created_at,
        )

    def require_new_name(self, name: str) -> None:
        """``AlreadyExists`` when a device is called ``name``."""
        if name in self._by_name:
            raise exception.AlreadyExists(kind="Device", name=name)

    # -- changes --------------------------------------------------------------------
    def add(self, name, kind, size, root, origin, mapped, created_at) -> Device:
        """Register a new device under the next id."""
        self.require_new_name(name)
        device = Device(self.next_id, name, kind, size, root, origin, mapped, created_at)
        self.next_id += 1
        self._register(device)
        self.touch(device)
        return device

    def remove(self, device: Device) -> None:
        """Forget a device (its tree is the caller's to drop)."""
        device.deleted = True
        del self._by_name[device.name]
        del self._by_id[device.id]
        self._changed.discard(device.id)
        self._deleted.add(device.id)

    def touch(self, device: Device) -> None:
        """Record that ``device``'s row changed."""
        self._changed.add(device.id)

    def pending(self) -> bool:
        """True when a change awaits a commit."""
        return bool(self._changed or self._deleted)

    def changes(self) -> tuple[list[tuple], list[int]]:
        """Rows to store and ids to delete since the last commit."""
        rows = [self._by_id[i].row() for i in self._changed if i in self._by_id]
        return rows, list(self._deleted)

    def committed(self) -> None:
        """The changes handed out are stored."""
        self._changed.clear()
        self._deleted.clear()

    def hand_over(self) -> tuple[set[int], set[int]]:
        """Take the changed and deleted ids for a commit that stores them outside the lock."""
        handed = self._changed, self._deleted
        self._changed, self._deleted = set(), set()
        return handed

    def take_back(self, handed: tuple[set[int], set[int]]) -> None:
        """A commit of ``hand_over``'s rows failed: they are changed again."""
        changed, deleted = handed
        self._changed |= {i for i in changed if i in self._by_id}
        self._deleted |= deleted

    # -- undo -----------------------------------------------------------------------
    def save_point(self) -> SavePoint:
        """Remember the table, with nothing pending, to return to it."""
        states = {d.id: (d.root, d.size, d.mapped) for d in self._by_name.values()}
        return SavePoint(dict(self._by_name), self.next_id, states)

    def restore(self, point: SavePoint) -> None:
        """Return to ``point``: devices added since are gone, removed ones are back."""
        self._by_name = dict(point.by_name)
        self._by_id = {device.id: device for device in self._by_name.values()}
        for device in self._by_name.values():
            device.root, device.size, device.mapped = point.states[device.id]
            device.deleted = False
        self.next_id = point.next_id
        self.committed()
