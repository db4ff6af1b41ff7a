"""How the ``evs`` command reaches the volume manager: in this process, or the service's.

``EmbeddedClient`` runs the operations here through its own ``VolumeManager``; a
``ServiceClient`` sends them to the running ``evs-volume``. Both offer ``call(name, ...)``
and answer with the same plain data, so the command does not care which one it has.

While an embedded command runs it shares the service's instance lock, so a service that
starts meanwhile waits for it (and says so) instead of taking the pools from under it;
while a service starts, new commands wait for its socket.
"""

import os
import time

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import exception, operations
from evs_driver.cmd.service_client import Operations, ServiceClient
from evs_driver.locking import WAIT_NOTICE, FileLock
from evs_driver.manager import VolumeManager
from evs_driver.operations import Context, Session
from evs_driver.service import protocol
from evs_driver.service.exporter import NBDExporter

LOG = logging.getLogger(__name__)
SERVICE_WAIT = 30.0  # seconds to wait for a starting service (recovery may take a while)


class EmbeddedClient(Operations):
    """Runs the operations in this process through a ``VolumeManager`` of its own, with a
    private NBD exporter for the copies that qemu-img makes."""

    embedded = True

    def __init__(self, conf: cfg.ConfigOpts, instance: FileLock | None = None):
        """``instance``: the service's instance lock, held shared until ``close``."""
        self.conf = conf
        self._instance = instance
        self._exporter = NBDExporter.from_conf(conf, None)
        self._session = Session(os.getpid())
        self.progress = None
        try:
            self.manager = VolumeManager(conf, exporter=self._exporter)
        except BaseException:
            self._release()
            raise

    def call(self, method: str, /, *args, **kwargs):
        """Run one operation here."""
        ctx = Context(self.manager, self._session, self.progress)
        return operations.run(ctx, method, args, kwargs)

    def close(self) -> None:
        """End this command's exports and release the manager's backends."""
        try:
            self._session.close()
            self.manager.close()
        finally:
            self._release()

    def _release(self) -> None:
        self._exporter.close()
        if self._instance is not None:
            self._instance.release()


def make_client(conf: cfg.ConfigOpts) -> EmbeddedClient | ServiceClient:
    """The service's client when ``evs-volume`` runs (or starts) for this state path, else
    an embedded one."""
    path = protocol.socket_path(conf)
    client = ServiceClient.connect(path)
    if client is not None:
        return client
    try:
        instance = _share_instance(conf)
    except OSError:
        return EmbeddedClient(conf)  # no usable state path: the manager says why
    if instance is not None:
        return EmbeddedClient(conf, instance)
    return _wait_for_service(conf, path)


def _share_instance(conf: cfg.ConfigOpts) -> FileLock | None:
    """The instance lock held shared, or None when a service runs or is starting."""
    gate = FileLock(protocol.gate_path(conf), 0, "the evs-volume start gate", shared=True)
    instance = FileLock(protocol.lock_path(conf), 0, "evs-volume", shared=True)
    try:
        gate.acquire()
    except exception.ConcurrentOperation:
        return None  # a service is starting (or runs)
    try:
        instance.acquire()
    except exception.ConcurrentOperation:
        return None  # a service holds it: it runs, or hangs
    finally:
        gate.release()
    return instance


def _wait_for_service(conf: cfg.ConfigOpts, path: str) -> ServiceClient:
    """Wait for a starting service's socket; it may first wait up to ``lock_timeout`` for
    the embedded commands that were running when it started."""
    start = time.monotonic()
    deadline = start + conf.lock_timeout + SERVICE_WAIT
    noticed = False
    while True:
        client = ServiceClient.connect(path)
        if client is not None:
            return client
        if time.monotonic() >= deadline:
            raise exception.ServiceUnavailable(
                path=path, reason="it holds the state path but does not answer; is it stuck?"
            )
        if not noticed and time.monotonic() - start >= WAIT_NOTICE:
            noticed = True
            LOG.warning("Waiting for evs-volume to start on %s...", path)
        time.sleep(0.1)


def service_running(conf: cfg.ConfigOpts) -> bool:
    """True when a service answers for this state path (used before starting one)."""
    client = ServiceClient.connect(protocol.socket_path(conf))
    if client is None:
        return False
    client.close()
    return True
