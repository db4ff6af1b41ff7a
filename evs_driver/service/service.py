"""``VolumeService``: one state path's manager, NBD exports and control socket in a process.

Only one runs per state path (an exclusive lock file), and it holds every pool open, so an
embedded ``evs`` cannot open a pool behind its back: ``evs`` finds the control socket and
sends its requests here instead. NBD writes and snapshots go through the same open pool
object, whose snapshot takes the volume's write lock: the write barrier of rule 2.1.
"""

import inspect
import os
import signal
import socket
import threading

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import exception, fileio, rules
from evs_driver.cmd.client import EmbeddedClient
from evs_driver.locking import FileLock
from evs_driver.manager import VolumeManager
from evs_driver.service.control import ControlServer, Session
from evs_driver.service.exporter import NBDExporter
from evs_driver.service.protocol import lock_path, socket_path, state_path

LOG = logging.getLogger(__name__)
START_WAIT = 2.0  # seconds a start waits for the lock: ``evs`` probes it for an instant


class VolumeService:
    """The long-running side: start with ``start``, stop with ``close``."""

    def __init__(self, conf: cfg.ConfigOpts):
        self.conf = conf
        self.state_path = state_path(conf)
        fileio.private_dir(self.state_path)
        self._instance = FileLock(lock_path(conf), timeout=START_WAIT)
        try:
            self._instance.acquire()
        except exception.ConcurrentOperation:
            raise exception.ServiceRunning(
                state_path=self.state_path, reason=f"{self._instance.path} is locked"
            ) from None
        self.manager = None
        self.exporter = None
        self.control = None
        try:
            run_dir = os.path.join(self.state_path, "run")
            fileio.private_dir(run_dir)
            os.chmod(run_dir, 0o700)  # also when an older version made it
            self.exporter = NBDExporter.from_conf(conf, os.path.join(run_dir, "nbd.sock"))
            self.manager = VolumeManager(conf, exporter=self.exporter)
            for driver in self.manager.drivers.values():
                hold = getattr(driver.backend, "hold_open", None)
                if hold is not None:
                    hold()  # keeps the pool open (and other processes out) until close
            self.client = EmbeddedClient(conf, manager=self.manager)
            self.control = ControlServer(socket_path(conf), self.handle)
        except BaseException:
            self.close()
            raise
        self._serve_lock = threading.Lock()  # snapshot serving versus snapshot deletes
        self._own = {
            "ping": self.ping,
            "volume_serve": self.volume_serve,
            "volume_unserve": self.volume_unserve,
            "snapshot_serve": self.snapshot_serve,
            "snapshot_unserve": self.snapshot_unserve,
            "export_list": self.export_list,
            "volume_delete": self.volume_delete,
            "snapshot_delete": self.snapshot_delete,
        }

    def start(self) -> None:
        """Take control requests from now on."""
        self.control.listen()
        LOG.info("evs-volume serves %s on %s", self.state_path, self.control.path)

    def close(self) -> None:
        """Stop taking requests, detach and close every export, close the pools cleanly."""
        try:
            if self.control is not None:
                self.control.close()
            if self.manager is not None:
                self._detach_all()
            if self.exporter is not None:
                self.exporter.close()
        finally:
            try:
                if self.manager is not None:
                    self.manager.close()  # flush, commit, mark the pools cleanly closed
            finally:
                self._instance.release()

    def _detach_all(self) -> None:
        for volume in self.manager.list_volumes():
            task = volume.task or {}
            if volume.status == "in-use" and task.get("owner") == self.manager.owner.token:
                try:
                    self.manager.detach_volume(volume.id, {})
                except exception.EVSError:
                    LOG.exception("Could not detach %s at shutdown", volume.id)

    # -- requests -----------------------------------------------------------------------
    def handle(self, method: str, args: list, kwargs: dict, session: Session):
        """Run one control request; argument mistakes are ``InvalidInput``."""
        if "session" in kwargs or "progress" in kwargs:
            raise exception.InvalidInput(reason="session and progress are not remote arguments")
        own = self._own.get(method)
        target = own or getattr(self.client, method)
        params = dict(kwargs, session=session) if own else kwargs
        try:
            inspect.signature(target).bind(*args, **params)
        except TypeError as exc:
            raise exception.InvalidInput(reason=f"{method}: {exc}") from None
        return target(*args, **params)

    def ping(self, *, session: Session) -> dict:
        """Who answers: for ``evs`` to tell a live service from a stale socket."""
        return {"pid": os.getpid(), "state_path": self.state_path}

    def volume_serve(
        self,
        volume: str,
        listen: dict | None = None,
        read_only: bool = False,
        scoped: bool = False,
        *,
        session: Session,
    ) -> dict:
        """Attach ``volume`` (in-use) and serve it; ``scoped``: until this connection ends."""
        connector = {"host": socket.gethostname(), "access_mode": "ro" if read_only else "rw"}
        if listen:
            connector["nbd_listen"] = listen
        record = self.manager.get_volume(volume)
        info = self.manager.attach_volume(record.id, connector)
        if scoped:
            session.on_close(lambda: self._end_scoped(record.id, info["data"], volume=True))
        return {"volume": record.id, "driver_volume_type": info["driver_volume_type"]} | info[
            "data"
        ]

    def volume_unserve(self, volume: str, *, session: Session) -> dict:
        """Stop serving ``volume`` and detach it (available again)."""
        record = self.manager.get_volume(volume)
        self.manager.detach_volume(record.id, {})
        return {"volume": record.id, "status": "available"}

    def snapshot_serve(
        self, snapshot: str, listen: dict | None = None, scoped: bool = False, *, session: Session
    ) -> dict:
        """Serve a snapshot read-only (its status does not change)."""
        with self._serve_lock:
            record = self.manager.get_snapshot(snapshot)
            existing = self.exporter.served(record.id)
            if scoped and existing:
                return {"snapshot": record.id} | existing  # already served: use that one
            rules.expect_status("Snapshot", record, ("available",), "serving")
            connector = {"host": socket.gethostname(), "access_mode": "ro"}
            if listen:
                connector["nbd_listen"] = listen
            connector = self.manager.nbd_connector(record, snapshot, connector)
            driver = self.manager.driver_for(record)
            info = driver.initialize_connection_snapshot(record, connector)
        if scoped:
            session.on_close(lambda: self._end_scoped(record.id, info["data"], volume=False))
        return {"snapshot": record.id, "driver_volume_type": info["driver_volume_type"]} | info[
            "data"
        ]

    def snapshot_unserve(self, snapshot: str, *, session: Session) -> dict:
        """Stop serving a snapshot."""
        record = self.manager.get_snapshot(snapshot)
        with self._serve_lock:
            if self.exporter.served(record.id) is None:
                raise exception.NotFound(kind="NBD export of snapshot", name=record.id)
            self.manager.driver_for(record).terminate_connection_snapshot(record, {})
        return {"snapshot": record.id, "served": False}

    def _end_scoped(self, device_id: str, data: dict, volume: bool) -> None:
        """End an export its session made, unless someone ended or replaced it since."""
        served = self.exporter.served(device_id)
        if served is None or served["uri"] != data["uri"]:
            return
        if volume:
            self.manager.detach_volume(device_id, {})
        else:
            with self._serve_lock:
                self.exporter.unexport(device_id)

    def export_list(self, *, session: Session) -> list[dict]:
        """Every NBD export with its connection count."""
        return self.exporter.exports()

    def volume_delete(self, volume: str, cascade: bool = False, *, session: Session) -> None:
        """Delete a volume, refusing while one of the snapshots a cascade deletes is served."""
        with self._serve_lock:
            if cascade:
                try:
                    snapshots = self.manager.list_snapshots(volume)
                except exception.NotFound:
                    snapshots = []  # the delete below reports it (or succeeds: already gone)
                for snap in snapshots:
                    self._not_served(snap.id)
            self.client.volume_delete(volume, cascade=cascade)

    def snapshot_delete(self, snapshot: str, *, session: Session) -> None:
        """Delete a snapshot, refusing while it is served."""
        with self._serve_lock:
            try:
                self._not_served(self.manager.get_snapshot(snapshot).id)
            except exception.NotFound:
                pass  # the delete below reports it (or succeeds: already gone)
            self.client.snapshot_delete(snapshot)

    def _not_served(self, snapshot_id: str) -> None:
        served = self.exporter.served(snapshot_id)
        if served:
            raise exception.InvalidOperation(
                reason=f"snapshot {snapshot_id} is served at {served['uri']}; "
                "stop serving it first (evs snapshot unserve)"
            )


def run_until_signalled(service: VolumeService, ready=None) -> None:
    """Start ``service``, call ``ready()``, and close it cleanly at SIGTERM or SIGINT."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        service.start()
        if ready is not None:
            ready()
        stop.wait()
        LOG.info("evs-volume stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
