"""``VolumeService``: one state path's manager, NBD exports and control socket in a process.

Only one runs per state path, and it holds every backend open, so an embedded ``evs``
cannot touch a pool behind its back: ``evs`` finds the control socket and sends its
requests here instead. Starting, the service first takes the *gate* lock (new ``evs``
commands then wait for its socket instead of running embedded), then waits for the
embedded commands already running (they share the instance lock) to finish. NBD writes and
snapshots go through the same open pool object, whose snapshot takes the volume's write
lock: the write barrier of rule 2.1. A scheduler thread takes the schedules' automatic
snapshots by the service's clock.
"""

import inspect
import os
import signal
import threading

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import exception, fileio, operations, scheduling
from evs_driver.locking import FileLock
from evs_driver.manager import VolumeManager
from evs_driver.operations import Context, Session
from evs_driver.service.control import ControlServer
from evs_driver.service.exporter import NBDExporter
from evs_driver.service.protocol import PING, gate_path, lock_path, socket_path, state_path
from evs_driver.service.scheduler import Scheduler

LOG = logging.getLogger(__name__)
START_WAIT = 2.0  # seconds a start waits for the gate: ``evs`` holds it for an instant
REMOTE_ONLY = ("session", "progress")  # keywords a request may not set


class VolumeService:
    """The long-running side: start with ``start``, stop with ``close``."""

    def __init__(self, conf: cfg.ConfigOpts):
        self.conf = conf
        self.state_path = state_path(conf)
        fileio.private_dir(self.state_path)
        self.manager = None
        self.exporter = None
        self.control = None
        self.scheduler = None
        self._gate = FileLock(gate_path(conf), START_WAIT, "the evs-volume start gate")
        self._instance = FileLock(lock_path(conf), conf.lock_timeout, "running evs commands")
        try:
            self._gate.acquire()
        except exception.ConcurrentOperation:
            raise exception.ServiceRunning(
                state_path=self.state_path, reason=f"{self._gate.path} is locked"
            ) from None
        try:
            self._instance.acquire()  # waits (saying so) for embedded commands to end
            run_dir = fileio.private_dir(os.path.join(self.state_path, "run"))
            os.chmod(run_dir, 0o700)  # also when an older version made it
            self.exporter = NBDExporter.from_conf(conf, os.path.join(run_dir, "nbd.sock"))
            self.manager = VolumeManager(conf, exporter=self.exporter)
            self.manager.clock = scheduling.clock_from_env()
            self.scheduler = Scheduler(self.manager, self.manager.clock)
            self._start_backends()
            self.manager.restore_attachments()  # block devices and targets of attached volumes
            self.control = ControlServer(socket_path(conf), self.handle)
        except BaseException:
            self.close()
            raise

    def _start_backends(self) -> None:
        """Open every backend now; one that is down is retried when a request needs it."""
        for name in self.manager.drivers:
            try:
                self.manager.drivers[name]
            except exception.BackendUnavailable as exc:
                LOG.error("Backend %s is down; serving the others: %s", name, exc.msg)

    def start(self) -> None:
        """Take control requests from now on."""
        self.control.listen()
        self.scheduler.start()
        LOG.info("evs-volume serves %s on %s", self.state_path, self.control.path)

    def close(self) -> None:
        """Stop taking requests, detach and close every export, close the pools cleanly."""
        try:
            if self.control is not None:
                self.control.close()
            if self.scheduler is not None:
                self.scheduler.close()
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
                self._gate.release()

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
        if set(kwargs) & set(REMOTE_ONLY):
            raise exception.InvalidInput(reason="session and progress are not remote arguments")
        if method == PING:
            return {"pid": os.getpid(), "state_path": self.state_path}
        run = operations.OPERATIONS[method].run
        ctx = Context(self.manager, session, in_service=True)
        try:
            inspect.signature(run).bind(ctx, *args, **kwargs)
        except TypeError as exc:
            raise exception.InvalidInput(reason=f"{method}: {exc}") from None
        return run(ctx, *args, **kwargs)

    def request(self, method: str, *args, **kwargs):
        """Run an operation for this process itself (``evs volume serve`` in the foreground)."""
        return self.handle(method, list(args), kwargs, Session(os.getpid()))


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
