"""The enabled backends of a manager: each started on first use, and reported down when
its storage is not there.

Invariants:
- a backend is started (driver set up, storage held open, crash leftovers recovered) under
  its ``BackendLock``, which this process then keeps: no other manager uses it meanwhile;
- a backend that failed to start is *down* with the reason; asking for it again retries
  after ``RETRY_SECONDS``, so a long-running service sees a remounted pool come back;
- a configuration error is never "down": it stops the caller, naming the option.
"""

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import exception
from evs_driver.conf import BackendConf
from evs_driver.interface import Exporter, VolumeDriver
from evs_driver.loader import load_driver
from evs_driver.locking import BackendLock

LOG = logging.getLogger(__name__)
RETRY_SECONDS = 10.0


@dataclasses.dataclass
class _Entry:
    conf: BackendConf
    lock: BackendLock
    unstarted: VolumeDriver  # loaded and configured, not set up
    driver: VolumeDriver | None = None
    down: exception.BackendUnavailable | None = None
    failed_at: float = 0.0


class BackendSet(Mapping):
    """Enabled backend names to started drivers (``backends[name]`` starts one)."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        names: list[str],
        lock_dir: str,
        exporter: Exporter | None,
        on_start: Callable[[str, VolumeDriver], None],
    ):
        """``on_start(name, driver)`` runs once a backend is up, under its lock."""
        self._exporter = exporter
        self._on_start = on_start
        self._guard = threading.Lock()  # guards the entries' driver/down fields
        self._entries: dict[str, _Entry] = {}
        for name in names:
            group = BackendConf(conf, name)
            group.validate()  # a bad option stops every command at once, naming its file
            driver = load_driver(group, exporter)
            driver.validate_config()
            lock = BackendLock(
                os.path.join(lock_dir, f"{name}.lock"), conf.lock_timeout, f"backend {name}"
            )
            self._entries[name] = _Entry(group, lock, driver)

    # -- Mapping ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> VolumeDriver:
        entry = self._entry(name)
        with entry.lock.hold():
            return self._started(name, entry)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    # -- use ------------------------------------------------------------------------------------
    def use(self, name: str, timeout: float | None = None):
        """A context manager: the backend's lock held, and its started driver."""
        return _Use(self, name, timeout)

    def unavailable(self, name: str) -> exception.BackendUnavailable | None:
        """Why ``name`` is down (or not enabled) as far as this process knows, else None."""
        if name not in self._entries:
            return _not_enabled(name)
        return self._entries[name].down

    def started(self) -> list[tuple[str, VolumeDriver]]:
        """The backends this process has started, in configuration order."""
        with self._guard:
            return [(n, e.driver) for n, e in self._entries.items() if e.driver is not None]

    def create_pool(self, name: str) -> None:
        """Create the storage of a backend that is down because it has none; it is then
        started on its next use."""
        entry = self._entry(name)
        with entry.lock.hold():
            if entry.driver is not None:
                raise exception.AlreadyExists(kind="Pool of backend", name=name)
            load_driver(entry.conf, self._exporter).create_pool()
            with self._guard:
                entry.down = None

    def close(self) -> None:
        """Close every started driver and let other processes have the backends."""
        for entry in self._entries.values():
            try:
                if entry.driver is not None:
                    entry.driver.close()
            finally:
                entry.driver = None
                entry.lock.close()

    # -- starting -----------------------------------------------------------------------------
    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise _not_enabled(name)
        return entry

    def _started(self, name: str, entry: _Entry) -> VolumeDriver:
        """The driver of ``name``, started now if need be (its lock is held)."""
        if entry.driver is not None:
            return entry.driver
        if entry.down is not None and time.monotonic() - entry.failed_at < RETRY_SECONDS:
            raise entry.down
        driver = entry.unstarted
        try:
            driver.do_setup(None)
            driver.check_for_setup_error()
            driver.hold_open()
            driver.recover()  # we hold the lock: no live manager works on it
        except (exception.ConfigError, exception.ConcurrentOperation):
            _close_quietly(driver)
            raise
        except exception.EVSError as exc:
            _close_quietly(driver)
            down = exc
            if not isinstance(exc, exception.BackendUnavailable):
                down = exception.BackendUnavailable(backend=name, reason=exc.msg)
            with self._guard:
                entry.down, entry.failed_at = down, time.monotonic()
            LOG.info("Backend %s is down: %s", name, down.msg)
            raise down from exc
        with self._guard:
            entry.driver, entry.down = driver, None
        LOG.debug("Backend %s started", name)
        self._on_start(name, driver)
        return driver


class _Use:
    """``with backends.use(name) as driver``: the lock for the block, the started driver."""

    def __init__(self, backends: BackendSet, name: str, timeout: float | None):
        self._backends = backends
        self._entry = backends._entry(name)
        self._name = name
        self._hold = self._entry.lock.hold(timeout)

    def __enter__(self) -> VolumeDriver:
        self._hold.__enter__()
        try:
            return self._backends._started(self._name, self._entry)
        except BaseException as exc:
            self._hold.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __exit__(self, *exc) -> None:
        self._hold.__exit__(*exc)


def _not_enabled(name: str) -> exception.BackendUnavailable:
    return exception.BackendUnavailable(
        backend=name, reason="it is not in enabled_backends; add it back to use its volumes"
    )


def _close_quietly(driver: VolumeDriver | None) -> None:
    if driver is None:
        return
    try:
        driver.close()
    except Exception:  # the start's own error is the one to report
        LOG.debug("Closing a backend that failed to start failed too", exc_info=True)
