"""Data in and out of volumes and snapshots, and what operators do to pools and statuses."""

from oslo_log import log as logging

from evs_driver import dataio, exception, recovery, rules
from evs_driver.interface import Progress
from evs_driver.manager.base import ManagerBase

LOG = logging.getLogger(__name__)


class DataOperations(ManagerBase):
    """Raw image copies, reset-state, statistics and checks."""

    def import_volume(self, ref: str, path: str, progress: Progress | None = None) -> int:
        """Write a raw image onto a detached volume; returns the data bytes written."""
        volume = self.get_volume(ref)
        self._require_enabled(volume.backend)
        with self.lock(volume.backend) as driver:
            volume = self._data_record("volume", volume.id, rules.DATA_VOLUME, "importing")
            with driver.open_device(volume, writable=True) as device:
                written = dataio.import_file(path, device, progress)
        LOG.info("Imported %s onto volume %s (%d bytes of data)", path, volume.id, written)
        return written

    def export(self, kind: str, ref: str, path: str, progress: Progress | None = None) -> int:
        """Write a detached volume or an available snapshot to a raw image file."""
        record = self.get_volume(ref) if kind == "volume" else self.get_snapshot(ref)
        self._require_enabled(record.backend)
        expected = rules.DATA_VOLUME if kind == "volume" else ("available",)
        with self.lock(record.backend) as driver:
            record = self._data_record(kind, record.id, expected, "exporting")
            with driver.open_device(record, writable=False) as device:
                return dataio.export_file(device, path, progress)

    def _data_record(self, kind: str, record_id: str, expected, action: str):
        # Checked under the backend lock: a racing delete waits for the copy to end.
        with self.catalog.reading() as txn:
            record = self._find(txn, kind, record_id)
        rules.expect_status(kind.capitalize(), record, expected, action)
        return record

    def reset_status(self, kind: str, ref: str, status: str):
        """Set a status by hand, like ``cinder reset-state`` (operators only)."""
        allowed = rules.VOLUME_STATUSES if kind == "volume" else rules.SNAPSHOT_STATUSES
        if status not in allowed:
            raise exception.InvalidInput(
                reason=f"{status!r} is not a {kind} status; use one of {', '.join(allowed)}"
            )
        with self.catalog.transaction() as txn:
            record = self._find(txn, kind, ref)
            before = record.status
            txn.move_status(record, status, expect=(before,), task=None)
        LOG.warning("Status of %s %s reset by hand from %s to %s", kind, record.id, before, status)
        return record

    def pool_stats(self) -> dict[str, dict | exception.BackendUnavailable]:
        """Each backend's Cinder statistics, or why it is down."""
        stats: dict[str, dict | exception.BackendUnavailable] = {}
        for name in self.drivers:
            try:
                with self.lock(name) as driver:
                    stats[name] = driver.get_volume_stats(refresh=True)
            except exception.BackendUnavailable as exc:
                stats[name] = exc
        return stats

    def create_pool(self, backend: str | None = None, force: bool = False) -> str:
        """Create a new, empty pool for a backend that has none; returns the backend's name.

        The catalog's volumes and snapshots on that backend had their data in the missing
        pool: without ``force`` they make this refuse, since they would be left without it.
        """
        backend = backend or next(iter(self.drivers))
        self._require_enabled(backend)
        try:
            self.drivers[backend]
        except exception.BackendUnavailable:
            pass  # down: perhaps for want of a pool, which the backend tells below
        else:
            raise exception.AlreadyExists(kind="Pool of backend", name=backend)
        with self.catalog.transaction() as txn:
            records = txn.volumes(backend=backend) + txn.snapshots(backend=backend)
        if records and not force:
            raise exception.InvalidOperation(
                reason=f"the catalog has {len(records)} volume(s) and snapshot(s) on backend "
                f"{backend}, whose data is in its missing pool; mount that pool again, or add "
                "--force to start a new, empty one without their data"
            )
        self.drivers.create_pool(backend)
        LOG.warning(
            "Created a new, empty pool for backend %s (%d catalog records had data in the old one)",
            backend,
            len(records),
        )
        return backend

    def check(self) -> dict[str, list[str]]:
        """Problems per backend: the backend's own check plus catalog-versus-pool checks."""
        return recovery.check(self)
