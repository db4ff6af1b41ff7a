"""Managing existing devices into the catalog, and unmanaging them (``evs volume manage``).

This is how a volume moves to another host: the old host unmanages it (the catalog forgets
it; the device stays), the new host manages it by reference (``{"source-name": ...}``) and
then its snapshots. Each call follows the manager's pattern: a catalog row in ``creating``,
the driver's work under the backend lock, then ``available`` (``error`` on failure, which
``recovery`` also resolves after a crash: the device under the new id means done).
Unmanaging has no intermediate status, so no recovery can ever delete the device.
"""

from evs_driver import catalog as cat
from evs_driver import exception, rules
from evs_driver.manager.base import ManagerBase

_UNMANAGE = ("available", "error")


class AdoptOperations(ManagerBase):
    """Adopting a backend's existing devices, and letting them go."""

    def manageable_volumes(self, backend: str | None = None) -> list[dict]:
        """The devices of ``backend`` (default: the first) that could be managed (GiB)."""
        backend = backend or next(iter(self.drivers))
        self._require_enabled(backend)
        with self.lock(backend) as driver:
            return driver.get_manageable_volumes(self.list_volumes(), None, None, 0, None, None)

    def manage_volume(
        self,
        backend: str | None,
        ref: dict,
        name: str | None = None,
        description: str | None = None,
    ) -> cat.Volume:
        """Adopt the device ``ref`` names on ``backend`` (default: the first) as a volume."""
        rules.check_name(name)
        rules.check_text("description", description)
        backend = backend or next(iter(self.drivers))
        self._require_enabled(backend)
        with self.lock(backend) as driver:
            probe = cat.Volume(**_fields(name, description, 0, backend, self))
            size = driver.manage_existing_get_size(probe, ref)
            volume = cat.Volume(
                **(_fields(name, description, size, backend, self) | {"id": probe.id})
            )
            with self.catalog.transaction() as txn:
                txn.add(volume)
            with self._failing_to(volume, "error"):
                update = driver.manage_existing(volume, ref)
        with self.catalog.transaction() as txn:
            txn.move_status(volume, "available", expect=("creating",), task=None, **(update or {}))
        return volume

    def manage_snapshot(
        self, volume_ref: str, ref: dict, name: str | None = None, description: str | None = None
    ) -> cat.Snapshot:
        """Adopt a snapshot of a managed volume, named on the backend by ``ref``."""
        rules.check_snapshot_name(name)
        rules.check_text("description", description)
        volume = self.get_volume(volume_ref)
        with self.lock(volume.backend) as driver:
            fields = _fields(name, description, 0, volume.backend, self)
            fields.pop("size")
            snapshot = cat.Snapshot(volume_id=volume.id, volume_size=0, **fields)
            snapshot.volume_size = driver.manage_existing_snapshot_get_size(snapshot, ref)
            with self.catalog.transaction() as txn:
                txn.add(snapshot)
            with self._failing_to(snapshot, "error"):
                update = driver.manage_existing_snapshot(snapshot, ref)
        with self.catalog.transaction() as txn:
            txn.move_status(
                snapshot, "available", expect=("creating",), task=None, **(update or {})
            )
        return snapshot

    def unmanage_volume(self, ref: str) -> cat.Volume:
        """Forget a volume without snapshots; its device stays for another host to manage."""
        volume = self.get_volume(ref)
        # Under the backend lock, and removed from the catalog before the driver call: an
        # operation that moved the status first makes the check below refuse, and one that
        # starts later finds nothing. No intermediate status: recovery must never delete it.
        with self.lock(volume.backend) as driver:
            driver.require_manage()  # before the catalog forgets anything
            with self.catalog.transaction() as txn:
                volume = self._find(txn, "volume", volume.id)
                rules.expect_status("Volume", volume, _UNMANAGE, "unmanaging")
                snapshots = txn.snapshots(volume_id=volume.id)
                if snapshots:
                    raise exception.InvalidOperation(
                        reason=f"volume {volume.id} has {len(snapshots)} snapshot(s): unmanage "
                        "them first (their data stays too)"
                    )
                for schedule in txn.schedules(volume_id=volume.id):
                    txn.remove_schedule(schedule)  # the new host makes its own
                txn.remove(volume)
            driver.unmanage(volume)
        return volume

    def unmanage_snapshot(self, ref: str) -> cat.Snapshot:
        """Forget a snapshot; its data stays on the backend."""
        snapshot = self.get_snapshot(ref)
        with self.lock(snapshot.backend) as driver:
            driver.require_manage()  # before the catalog forgets anything
            with self.catalog.transaction() as txn:
                snapshot = self._find(txn, "snapshot", snapshot.id)
                rules.expect_status("Snapshot", snapshot, _UNMANAGE, "unmanaging")
                txn.remove(snapshot)
            driver.unmanage_snapshot(snapshot)
        return snapshot


def _fields(name, description, size, backend, manager) -> dict:
    stamp = cat.now()
    return {
        "id": cat.new_id(),
        "display_name": name,
        "display_description": description,
        "size": size,
        "status": "creating",
        "backend": backend,
        "created_at": stamp,
        "updated_at": stamp,
        "task": manager._task("manage"),
    }
