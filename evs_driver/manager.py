"""``VolumeManager``: the coordinator over catalog, locks, rules and one driver per backend.

Every operation follows one pattern: a catalog transaction checks the rules and moves
the status (compare-and-set), the driver does the work under the backend's process
lock, and a last transaction sets the final status. A crash between the steps leaves an
intermediate status owned by a dead manager, which ``recovery`` resolves at the next start.
"""

import contextlib
import os
from collections.abc import Callable, Iterator

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import dataio, exception, faults, fileio, recovery, rules
from evs_driver.conf import BackendConf, option_error, validate
from evs_driver.exporter import Exporter
from evs_driver.loader import load_driver
from evs_driver.locking import OwnerToken, ProcessLock

LOG = logging.getLogger(__name__)
EMBEDDED_BACKEND = "local"
Progress = Callable[[int, int], None] | None


class VolumeManager:
    """Volumes and snapshots over the enabled backends, enforcing EVS_RULES.md."""

    def __init__(self, conf: cfg.ConfigOpts, exporter: Exporter | None = None):
        self.conf = conf
        validate(conf)
        self.state_path = self._state_path()
        self.catalog = cat.Catalog(os.path.join(self.state_path, "catalog.sqlite"))
        self.owner = OwnerToken(os.path.join(self.state_path, "owners"))
        self.drivers: dict = {}
        self._locks: dict[str, ProcessLock] = {}
        try:
            for name in conf.enabled_backends or [EMBEDDED_BACKEND]:
                self._start_backend(name, exporter)
            recovery.recover(self)
            self._release_dead_attachments()
        except BaseException:
            self.close()
            raise

    def _state_path(self) -> str:
        path = os.path.abspath(os.path.expanduser(self.conf.state_path))
        try:
            fileio.private_dir(path)
        except OSError as exc:
            raise option_error(
                self.conf, "DEFAULT", "state_path", f"{path}: {exc.strerror}"
            ) from exc
        if not os.access(path, os.W_OK | os.X_OK):
            raise option_error(self.conf, "DEFAULT", "state_path", f"{path} is not writable")
        return path

    def _start_backend(self, name: str, exporter: Exporter | None) -> None:
        group = BackendConf(self.conf, name)
        group.validate()
        driver = load_driver(group, exporter)
        self.drivers[name] = driver  # registered first so close() releases it on failure
        driver.do_setup(None)
        driver.check_for_setup_error()
        lock_path = os.path.join(self.state_path, "locks", f"{name}.lock")
        self._locks[name] = ProcessLock(lock_path, timeout=self.conf.lock_timeout)
        self._recover_backend(name, driver, lock_path)
        LOG.debug("Backend %s started", name)

    @staticmethod
    def _recover_backend(name: str, driver, lock_path: str) -> None:
        """Let the backend settle work a crash interrupted (e.g. an LVM revert's intent record).

        Only when its lock is free: a held lock means a live manager is working on this
        backend, and its work in flight must not be taken for a crash's leftovers.
        """
        probe = ProcessLock(lock_path, timeout=0)
        try:
            with probe.hold():
                driver.backend.recover()
        except exception.ConcurrentOperation:
            LOG.debug("Backend %s is busy in another process; its recovery is left to it", name)

    def close(self) -> None:
        """Release every backend and this manager's owner token."""
        for driver in self.drivers.values():
            driver.close()
        self.owner.close()

    # -- helpers ------------------------------------------------------------------------
    def lock(self, backend: str) -> contextlib.AbstractContextManager:
        """The process lock of one backend: backend work runs under it."""
        return self._locks[backend].hold()

    def driver_for(self, record) -> object:
        """The driver of the backend that holds ``record``."""
        try:
            return self.drivers[record.backend]
        except KeyError:
            raise exception.InvalidOperation(
                reason=f"{record.id} lives on backend {record.backend!r}, which is not in "
                "enabled_backends"
            ) from None

    def _task(self, op: str, **extra) -> dict:
        return {"op": op, "owner": self.owner.token, **extra}

    @contextlib.contextmanager
    def _failing_to(self, record, status: str, *others) -> Iterator[None]:
        """On an error in the block, move ``record`` (and ``others``) to ``status``."""
        try:
            yield
        except BaseException:
            with self.catalog.transaction() as txn:
                for item in (record, *others):
                    txn.update(item, status=status, task=None)
            raise

    # -- lookups ------------------------------------------------------------------------
    def _find(self, txn: cat.Txn, kind: str, ref: str):
        get, query = (
            (txn.volume, txn.volumes) if kind == "volume" else (txn.snapshot, txn.snapshots)
        )
        record = get(ref)
        if record is not None:
            return record
        named = query(name=ref)
        if len(named) > 1:
            raise exception.AmbiguousName(count=len(named), kind=kind, name=ref)
        if not named:
            raise exception.NotFound(kind=kind.capitalize(), name=ref)
        return named[0]

    def _find_or_gone(self, txn: cat.Txn, kind: str, ref: str):
        """The record ``ref`` names, or None for an id that matches nothing: already deleted.

        Names are looked up too, so a name that happens to look like an id is never taken
        for a deleted one; anything else that matches nothing is ``NotFound``.
        """
        try:
            return self._find(txn, kind, ref)
        except exception.NotFound:
            if rules.is_canonical_id(ref):
                return None
            raise

    def get_volume(self, ref: str) -> cat.Volume:
        """A volume by id or unique name."""
        with self.catalog.transaction() as txn:
            return self._find(txn, "volume", ref)

    def get_snapshot(self, ref: str) -> cat.Snapshot:
        """A snapshot by id or unique name."""
        with self.catalog.transaction() as txn:
            return self._find(txn, "snapshot", ref)

    def list_volumes(self) -> list[cat.Volume]:
        """Every volume, oldest first."""
        with self.catalog.transaction() as txn:
            return txn.volumes()

    def list_snapshots(self, volume: str | None = None) -> list[cat.Snapshot]:
        """Every snapshot, or those of one volume (id or name), oldest first."""
        with self.catalog.transaction() as txn:
            if volume is None:
                return txn.snapshots()
            return txn.snapshots(volume_id=self._find(txn, "volume", volume).id)

    def usage(self, record):
        """Size, mapped and exclusive bytes of a volume or snapshot, None when not on disk."""
        driver = self.driver_for(record)
        with self.lock(record.backend):
            if not driver.device_exists(record):
                return None
            return driver.device_usage(record)

    @staticmethod
    def _busy(txn: cat.Txn, volume: cat.Volume) -> None:
        """Refuse to change a volume while a snapshot or a clone of it is being created."""
        creating = txn.snapshots(volume_id=volume.id, status="creating")
        creating += txn.volumes(source_volume_id=volume.id, status="creating")
        if creating:
            raise exception.ConcurrentOperation(
                kind="Volume", name=volume.id, reason=f"{creating[0].id} is being created from it"
            )

    # -- volumes ------------------------------------------------------------------------
    def create_volume(
        self,
        size: int | None = None,
        name: str | None = None,
        description: str | None = None,
        snapshot: str | None = None,
        source_volume: str | None = None,
        full_clone: bool = False,
        backend: str | None = None,
        metadata: dict | None = None,
        progress: Progress = None,
    ) -> cat.Volume:
        """Create an empty volume, or one from a snapshot or volume (linked or full clone)."""
        rules.check_name(name)
        rules.check_text("description", description)
        if size is not None:
            rules.check_size(size)
        if snapshot and source_volume:
            raise exception.InvalidInput(reason="give a snapshot or a source volume, not both")
        if full_clone and not (snapshot or source_volume):
            raise exception.InvalidInput(reason="full_clone needs a snapshot or a source volume")
        if size is None and not (snapshot or source_volume):
            raise exception.InvalidSize(reason="size is required for an empty volume")
        source = None
        if snapshot or source_volume:
            source = self.get_snapshot(snapshot) if snapshot else self.get_volume(source_volume)
            backend = source.backend
            faults.point("create_volume.source_read")
        backend = backend or next(iter(self.drivers))
        if backend not in self.drivers:
            raise exception.InvalidInput(reason=f"no enabled backend named {backend!r}")
        driver = self.drivers[backend]
        with self.lock(backend):
            volume = self._add_volume(
                driver, backend, size, name, description, source, full_clone, metadata
            )
            faults.point("create_volume.before_backend")
            with self._failing_to(volume, "error"):
                if full_clone:
                    update = driver.create_full_clone(
                        volume, source, self._progress(volume, progress)
                    )
                elif snapshot:
                    update = driver.create_volume_from_snapshot(volume, source)
                elif source_volume:
                    update = driver.create_cloned_volume(volume, source)
                else:
                    update = driver.create_volume(volume)
            faults.point("create_volume.after_backend")
        with self.catalog.transaction() as txn:
            txn.update(volume, status="available", task=None, **(update or {}))
        LOG.info("Created volume %s (%d GiB) on %s", volume.id, volume.size, backend)
        return volume

    def _add_volume(self, driver, backend, size, name, description, source, full_clone, metadata):
        with self.catalog.transaction() as txn:
            source_snapshot = source_volume = None
            if isinstance(source, cat.Snapshot):
                source = self._reread(txn, source, txn.snapshot)
                rules.expect_status("Snapshot", source, rules.FROM_SNAPSHOT, "creating a volume")
                source_snapshot, minimum, what = source.id, source.volume_size, "the snapshot"
            elif isinstance(source, cat.Volume):
                source = self._reread(txn, source, txn.volume)
                rules.expect_status("Volume", source, rules.CLONE_SOURCE, "cloning")
                source_volume, minimum, what = source.id, source.size, "the source volume"
            if source is not None:
                size = source.size if size is None else size  # a snapshot's size is its volume's
                rules.check_not_smaller(size, minimum, what)
            stats = driver.get_volume_stats(refresh=True)
            raw = driver.pool_stats()  # unrounded bytes: tiny pools must not round to 0 GiB
            rules.check_oversubscription(
                backend,
                raw.total_bytes / rules.GiB,
                raw.provisioned_bytes / rules.GiB,
                size,
                stats["max_over_subscription_ratio"],
                stats["reserved_percentage"],
            )
            stamp = cat.now()
            volume = cat.Volume(
                id=cat.new_id(),
                display_name=name,
                display_description=description,
                size=size,
                status="creating",
                backend=backend,
                created_at=stamp,
                updated_at=stamp,
                source_snapshot_id=source_snapshot,
                source_volume_id=source_volume,
                full_clone=full_clone,
                progress=0 if full_clone else None,
                metadata=metadata or {},
                task=self._task("create", full_clone=full_clone),
            )
            txn.add(volume)
        return volume

    @staticmethod
    def _reread(txn: cat.Txn, record, get):
        """``record`` as the catalog holds it now: it may have changed while we waited."""
        current = get(record.id)
        if current is None:
            kind = type(record).__name__
            raise exception.NotFound(kind=kind, name=f"{record.id} (deleted meanwhile)")
        return current

    def _progress(self, volume: cat.Volume, report: Progress) -> Callable[[int, int], None]:
        """Record a full clone's progress in the catalog (whole percents) and pass it on."""
        last = [-1]

        def update(done: int, total: int) -> None:
            percent = done * 100 // total if total else 100
            if percent != last[0]:
                last[0] = percent
                with self.catalog.transaction() as txn:
                    txn.update(volume, progress=percent)
                faults.point("full_clone.progress")
            if report:
                report(done, total)

        return update

    def delete_volume(self, ref: str, cascade: bool = False) -> None:
        """Delete a volume (and with ``cascade`` its snapshots); a missing volume is fine."""
        with self.catalog.transaction() as txn:
            volume = self._find_or_gone(txn, "volume", ref)
            if volume is None:
                LOG.info("Volume %s is already gone: nothing to delete", ref)
                return
            rules.expect_status("Volume", volume, rules.DELETE_VOLUME, "deleting")
            snapshots = txn.snapshots(volume_id=volume.id)
            if snapshots and not cascade:
                raise exception.VolumeHasSnapshots(volume=volume.id, count=len(snapshots))
            self._busy(txn, volume)
            for snap in snapshots:
                rules.expect_status("Snapshot", snap, rules.DELETE_SNAPSHOT, "a cascade delete")
                if txn.volumes(source_snapshot_id=snap.id, status="creating"):
                    raise exception.ConcurrentOperation(
                        kind="Snapshot", name=snap.id, reason="a volume is being created from it"
                    )
            task = self._task("delete")
            for item in (volume, *snapshots):
                txn.update(item, status="deleting", task=task)
        driver = self.driver_for(volume)
        with self.lock(volume.backend):
            for snap in snapshots:
                with self._failing_to(snap, "error_deleting", volume):
                    driver.delete_snapshot(snap)
                with self.catalog.transaction() as txn:
                    txn.remove(snap)
                faults.point("delete_volume.snapshot_deleted")
            with self._failing_to(volume, "error_deleting"):
                driver.delete_volume(volume)
            faults.point("delete_volume.after_backend")
            driver.collect()  # rule 8: the freed space is usable when the delete returns
        with self.catalog.transaction() as txn:
            txn.remove(volume)
        LOG.info("Deleted volume %s and %d snapshot(s)", volume.id, len(snapshots))

    def extend_volume(self, ref: str, new_size: int) -> cat.Volume:
        """Grow a volume to ``new_size`` GiB; its snapshots keep their sizes."""
        rules.check_size(new_size)
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            rules.expect_status("Volume", volume, rules.EXTEND_VOLUME, "extending")
            rules.check_extend(volume.size, new_size)
            self._busy(txn, volume)
            txn.update(volume, status="extending", task=self._task("extend", new_size=new_size))
        with self.lock(volume.backend), self._failing_to(volume, "error_extending"):
            self.driver_for(volume).extend_volume(volume, new_size)
            faults.point("extend_volume.after_backend")
        with self.catalog.transaction() as txn:
            txn.update(volume, status="available", size=new_size, task=None)
        return volume

    def revert_volume(self, ref: str, snapshot_ref: str) -> cat.Volume:
        """Make a volume read as any of its own snapshots; every snapshot survives."""
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            snapshot = self._find(txn, "snapshot", snapshot_ref)
            if snapshot.volume_id != volume.id:
                raise exception.InvalidInput(
                    reason=f"snapshot {snapshot.id} belongs to volume {snapshot.volume_id}, not "
                    f"{volume.id}; a volume reverts only to its own snapshots"
                )
            rules.expect_status("Volume", volume, rules.REVERT_VOLUME, "reverting")
            rules.expect_status("Snapshot", snapshot, rules.REVERT_SNAPSHOT, "reverting")
            self._busy(txn, volume)
            task = self._task("revert", snapshot_id=snapshot.id)
            txn.update(volume, status="rollbacking", task=task)
            txn.update(snapshot, status="rollbacking", task=task)
        try:
            with self.lock(volume.backend):
                self.driver_for(volume).revert_to_snapshot(None, volume, snapshot)
                faults.point("revert.after_backend")
        except BaseException:
            with self.catalog.transaction() as txn:
                txn.update(volume, status="error_rollbacking", task=None)
                txn.update(snapshot, status="available", task=None)
            raise
        with self.catalog.transaction() as txn:
            txn.update(volume, status="available", task=None)
            txn.update(snapshot, status="available", task=None)
        return volume

    # -- snapshots ----------------------------------------------------------------------
    def create_snapshot(
        self,
        volume_ref: str,
        name: str | None = None,
        description: str | None = None,
        force: bool = False,
        metadata: dict | None = None,
    ) -> cat.Snapshot:
        """Snapshot a volume (``force`` is accepted as in Cinder API 3.66: in-use needs none)."""
        rules.check_snapshot_name(name)
        rules.check_text("description", description)
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", volume_ref)
            rules.expect_status("Volume", volume, rules.SNAPSHOT_SOURCE, "a snapshot")
            count = len(txn.snapshots(volume_id=volume.id))
            rules.check_snapshot_limit(volume.id, count, self.conf.max_snapshots_per_volume)
            stamp = cat.now()
            snapshot = cat.Snapshot(
                id=cat.new_id(),
                display_name=name,
                display_description=description,
                volume_id=volume.id,
                volume_size=volume.size,
                status="creating",
                backend=volume.backend,
                created_at=stamp,
                updated_at=stamp,
                metadata=metadata or {},
                task=self._task("create"),
            )
            txn.add(snapshot)
        with self.lock(volume.backend), self._failing_to(snapshot, "error"):
            update = self.driver_for(volume).create_snapshot(snapshot)
            faults.point("create_snapshot.after_backend")
        with self.catalog.transaction() as txn:
            txn.update(snapshot, status="available", task=None, **(update or {}))
        return snapshot

    def delete_snapshot(self, ref: str) -> None:
        """Delete a snapshot; volumes made from or reverted to it keep their data."""
        with self.catalog.transaction() as txn:
            snapshot = self._find_or_gone(txn, "snapshot", ref)
            if snapshot is None:
                LOG.info("Snapshot %s is already gone: nothing to delete", ref)
                return
            rules.expect_status("Snapshot", snapshot, rules.DELETE_SNAPSHOT, "deleting")
            if txn.volumes(source_snapshot_id=snapshot.id, status="creating"):
                raise exception.ConcurrentOperation(
                    kind="Snapshot", name=snapshot.id, reason="a volume is being created from it"
                )
            txn.update(snapshot, status="deleting", task=self._task("delete"))
        driver = self.driver_for(snapshot)
        with self.lock(snapshot.backend):
            with self._failing_to(snapshot, "error_deleting"):
                driver.delete_snapshot(snapshot)
                faults.point("delete_snapshot.after_backend")
            driver.collect()  # rule 8: the freed space is usable when the delete returns
        with self.catalog.transaction() as txn:
            txn.remove(snapshot)

    # -- data ---------------------------------------------------------------------------
    def import_volume(self, ref: str, path: str, progress: Progress = None) -> int:
        """Write a raw image onto a detached volume; returns the data bytes written."""
        volume = self.get_volume(ref)
        with self.lock(volume.backend):
            volume = self._data_record("volume", volume.id, rules.DATA_VOLUME, "importing")
            with self.driver_for(volume).open_device(volume, writable=True) as device:
                return dataio.import_file(path, device, progress)

    def export(self, kind: str, ref: str, path: str, progress: Progress = None) -> int:
        """Write a detached volume or an available snapshot to a raw image file."""
        record = self.get_volume(ref) if kind == "volume" else self.get_snapshot(ref)
        expected = rules.DATA_VOLUME if kind == "volume" else ("available",)
        with self.lock(record.backend):
            record = self._data_record(kind, record.id, expected, "exporting")
            with self.driver_for(record).open_device(record, writable=False) as device:
                return dataio.export_file(device, path, progress)

    def _data_record(self, kind: str, record_id: str, expected, action: str):
        # Checked under the backend lock: a racing delete waits for the copy to end.
        with self.catalog.transaction() as txn:
            record = self._find(txn, kind, record_id)
        rules.expect_status(kind.capitalize(), record, expected, action)
        return record

    # -- attachments and admin ---------------------------------------------------------
    def attach_volume(self, ref: str, connector: dict) -> dict:
        """Mark a volume in-use and return its connection info."""
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            rules.expect_status("Volume", volume, ("available",), "attaching")
            connector = self._nbd_connector(txn, volume, ref, connector)
            # The owner lets a later start tell an attachment whose server died.
            txn.update(volume, status="in-use", task=self._task("attach"))
        with self._failing_to(volume, "available"):
            return self.driver_for(volume).initialize_connection(volume, connector)

    def nbd_connector(self, record, ref: str, connector: dict) -> dict:
        """``connector`` with ``nbd_name``: the record's name as its second NBD export name,
        when that name is no other volume's or snapshot's name or id.

        Serving by a shared name (``ref``) is refused, as a client could not tell the
        devices apart; served by id, such a record is exported under its id only."""
        with self.catalog.transaction() as txn:
            return self._nbd_connector(txn, record, ref, connector)

    def _nbd_connector(self, txn: cat.Txn, record, ref: str, connector: dict) -> dict:
        name = record.display_name
        if not name:
            return connector
        clash = _name_clash(txn, name, record.id)
        if clash is None:
            return dict(connector, nbd_name=name)
        if ref == name:
            raise exception.AmbiguousExportName(name=name, other=clash, id=record.id)
        LOG.warning(
            "%s is served under its id only: its name %s is also %s", record.id, name, clash
        )
        return connector

    def detach_volume(self, ref: str, connector: dict) -> None:
        """End a volume's connection and make it available again."""
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            rules.expect_status("Volume", volume, ("in-use",), "detaching")
        self.driver_for(volume).terminate_connection(volume, connector)
        with self.catalog.transaction() as txn:
            txn.update(volume, expect=("in-use",), status="available", task=None)

    def _release_dead_attachments(self) -> None:
        """Make volumes attached by a manager that died available: their exports died too."""
        with self.catalog.transaction() as txn:
            attached = txn.in_status("volumes", ("in-use",))
        for volume in attached:
            task = volume.task or {}
            if task.get("op") != "attach" or self.owner.is_alive(task.get("owner")):
                continue  # set by hand (reset-state), or still served by a live manager
            with self.catalog.transaction() as txn:
                txn.update(volume, expect=("in-use",), status="available", task=None)
            LOG.warning("Volume %s was attached by a stopped service; now available", volume.id)

    def reset_status(self, kind: str, ref: str, status: str):
        """Set a status by hand, like ``cinder reset-state`` (operators only)."""
        allowed = rules.VOLUME_STATUSES if kind == "volume" else rules.SNAPSHOT_STATUSES
        if status not in allowed:
            raise exception.InvalidInput(
                reason=f"{status!r} is not a {kind} status; use one of {', '.join(allowed)}"
            )
        with self.catalog.transaction() as txn:
            record = self._find(txn, kind, ref)
            txn.update(record, status=status, task=None)
        return record

    # -- pools --------------------------------------------------------------------------
    def pool_stats(self) -> dict[str, dict]:
        """Each backend's Cinder statistics."""
        stats = {}
        for name, driver in self.drivers.items():
            with self.lock(name):
                stats[name] = driver.get_volume_stats(refresh=True)
        return stats

    def check(self) -> dict[str, list[str]]:
        """Problems per backend: the backend's own check plus catalog-versus-pool checks."""
        return recovery.check(self)


def _name_clash(txn: cat.Txn, name: str, own_id: str) -> str | None:
    """What else ``name`` stands for among volumes and snapshots; None when nothing."""
    for kind, by_id, by_name in (
        ("volume", txn.volume, txn.volumes),
        ("snapshot", txn.snapshot, txn.snapshots),
    ):
        if by_id(name) is not None:
            return f"the id of a {kind}"
        others = [record.id for record in by_name(name=name) if record.id != own_id]
        if others:
            return f"the name of {kind} {others[0]}"
    return None
