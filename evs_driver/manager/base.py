"""What every manager operation stands on: configuration, the catalog, the backends, lookups.

Every operation follows one pattern: a catalog transaction checks the rules and moves the
status (compare-and-set), the driver does the work under the backend's lock, and a last
transaction sets the final status. If the backend turns out to be unavailable before any
work was done, the first transaction is undone (the request changed nothing); a failure
during the work leaves an ``error*`` status. A crash between the steps leaves an
intermediate status owned by a dead manager, which ``recovery`` resolves at the next start.
"""

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, fileio, recovery, rules
from evs_driver.backends.known_pools import KnownPools
from evs_driver.conf import option_error, validate
from evs_driver.interface import Exporter, VolumeDriver
from evs_driver.locking import OwnerToken
from evs_driver.manager.backends import BackendSet

LOG = logging.getLogger(__name__)
EMBEDDED_BACKEND = "local"


class ManagerBase:
    """The manager's state and the helpers its operations share."""

    def __init__(self, conf: cfg.ConfigOpts, exporter: Exporter | None = None):
        self.conf = conf
        validate(conf)
        self.state_path = self._state_path()
        self.catalog = cat.Catalog(
            os.path.join(self.state_path, "catalog.sqlite"),
            used_before=KnownPools(self.state_path).exist(),
        )
        self.owner = OwnerToken(os.path.join(self.state_path, "owners"))
        self.drivers: BackendSet | None = None
        self.exporter = exporter
        self._serve_lock = threading.Lock()  # serving a snapshot versus deleting it
        try:
            self.drivers = BackendSet(
                conf,
                conf.enabled_backends or [EMBEDDED_BACKEND],
                os.path.join(self.state_path, "locks"),
                exporter,
                self._backend_started,
            )
            self._release_dead_attachments()
            recovery.recover_abandoned(self)
            if exporter is not None:
                exporter.offer_changes(self.diff_bases)
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

    def _backend_started(self, name: str, driver: VolumeDriver) -> None:
        """Resolve what a crash left on this backend, now that it is up."""
        recovery.recover_backend(self, name)

    def close(self) -> None:
        """Release every backend and this manager's owner token."""
        try:
            if self.drivers is not None:
                self.drivers.close()
        finally:
            self.owner.close()
            self.catalog.close()

    def _release_dead_attachments(self) -> None:
        """Defined by the attachments operations."""

    def diff_bases(self, device_id: str) -> list[tuple[str, str | None]]:
        """Defined by the diff operations."""
        raise NotImplementedError

    # -- backends ----------------------------------------------------------------------------
    def lock(self, backend: str) -> contextlib.AbstractContextManager:
        """The lock of one backend, with the backend started: backend work runs under it."""
        return self.drivers.use(backend)

    def driver_for(self, record) -> VolumeDriver:
        """The started driver of the backend that holds ``record``."""
        return self.drivers[record.backend]

    def _require_enabled(self, backend: str) -> None:
        """Refuse, changing nothing, a request for a backend that is not enabled."""
        if backend not in self.drivers:
            raise self.drivers.unavailable(backend)

    @contextlib.contextmanager
    def _backend(self, backend: str, undo: Callable[[], None]) -> Iterator[VolumeDriver]:
        """The backend's lock and driver for the block; ``undo`` puts the catalog back
        (the request then changed nothing) if the backend cannot be started."""
        try:
            use = self.drivers.use(backend)
            driver = use.__enter__()
        except (exception.BackendUnavailable, exception.ConcurrentOperation):
            undo()
            raise
        try:
            yield driver
        except BaseException as exc:
            use.__exit__(type(exc), exc, exc.__traceback__)
            raise
        use.__exit__(None, None, None)

    def _restore(self, *records) -> Callable[[], None]:
        """An ``undo`` that gives ``records`` back the status and task they have now."""
        saved = [(record, record.status, record.task) for record in records]

        def undo() -> None:
            with self.catalog.transaction() as txn:
                for record, status, task in saved:
                    txn.move_status(record, status, expect=(record.status,), task=task)

        return undo

    def _forget(self, *records) -> Callable[[], None]:
        """An ``undo`` that removes rows the request added."""

        def undo() -> None:
            with self.catalog.transaction() as txn:
                for record in records:
                    txn.remove(record)

        return undo

    def _task(self, op: str, **extra) -> dict:
        return {"op": op, "owner": self.owner.token, **extra}

    @contextlib.contextmanager
    def _failing_to(self, record, status: str, *others) -> Iterator[None]:
        """On an error in the block, move ``record`` (and ``others``) to ``status``."""
        try:
            yield
        except BaseException as exc:
            with self.catalog.transaction() as txn:
                for item in (record, *others):
                    txn.move_status(item, status, expect=(item.status,), task=None)
            LOG.error("%s %s is now %s: %s", type(record).__name__, record.id, status, _reason(exc))
            raise

    # -- lookups ------------------------------------------------------------------------------
    def _find(self, txn: cat.Txn, kind: str, ref: str):
        if not isinstance(ref, str) or not ref:
            raise exception.InvalidInput(reason=f"a {kind} is named by its id or name, not {ref!r}")
        table = kind.replace(" ", "_")  # "volume", "snapshot", "group", "group snapshot"
        get, query = getattr(txn, table), getattr(txn, f"{table}s")
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

    def served(self, record) -> dict | None:
        """The live export of a volume or snapshot, None when this process serves none.

        Only a process that started the backend can serve from it (the service, or an
        embedded command during a copy), so an unstarted backend serves nothing here.
        """
        for name, driver in self.drivers.started():
            if name == record.backend:
                return driver.served(record.id)
        return None

    def _refuse_served(self, snapshot: cat.Snapshot) -> None:
        """Refuse to delete a snapshot that is served (call with ``_serve_lock`` held)."""
        served = self.served(snapshot)
        if served:
            raise exception.InvalidOperation(
                reason=f"snapshot {snapshot.id} is served at {served['uri']}; "
                f"run `evs snapshot unserve {snapshot.id}` first"
            )

    def get_volume(self, ref: str) -> cat.Volume:
        """A volume by id or unique name."""
        with self.catalog.reading() as txn:
            return self._find(txn, "volume", ref)

    def get_snapshot(self, ref: str) -> cat.Snapshot:
        """A snapshot by id or unique name."""
        with self.catalog.reading() as txn:
            return self._find(txn, "snapshot", ref)

    def list_volumes(self) -> list[cat.Volume]:
        """Every volume, oldest first."""
        with self.catalog.reading() as txn:
            return txn.volumes()

    def list_snapshots(self, volume: str | None = None) -> list[cat.Snapshot]:
        """Every snapshot, or those of one volume (id or name), oldest first."""
        with self.catalog.reading() as txn:
            if volume is None:
                return txn.snapshots()
            return txn.snapshots(volume_id=self._find(txn, "volume", volume).id)

    def usage(self, record, wait: bool = True):
        """Size, mapped and exclusive bytes of a volume or snapshot, None when not on disk.

        With ``wait=False`` a backend busy in another process raises ``ConcurrentOperation``
        at once instead of waiting for it (for listings that can do without)."""
        with self.drivers.use(record.backend, None if wait else 0) as driver:
            if not driver.device_exists(record):
                return None
            return driver.device_usage(record)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "msg", None) or f"{type(exc).__name__}: {exc}"
