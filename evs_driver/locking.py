"""Locks that hold across threads and processes, and a liveness token per manager.

All are ``flock`` on a file: ``flock`` locks belong to an open file description, so they
exclude other processes (and other opens in this one), and the kernel drops them when a
process dies, so a crash never leaves a lock behind.
"""

import contextlib
import errno
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator

from oslo_log import log as logging

from evs_driver import exception, fileio

LOG = logging.getLogger(__name__)

_POLL = 0.05
WAIT_NOTICE = 1.0  # seconds of waiting before saying who holds a lock


def holder_of(path: str) -> str | None:
    """Who holds the lock file at ``path`` as its exclusive holder recorded it ("pid N"),
    or None (shared holders record nothing)."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).decode(errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else None


class FileLock:
    """An ``flock`` on ``path``, exclusive (or ``shared``), waited for up to ``timeout`` s.

    The exclusive holder writes its pid into the file, so a waiter can say who it waits
    for; after ``WAIT_NOTICE`` seconds of waiting it logs that once at WARNING (the ``evs``
    command shows warnings on stderr). Not bound to a thread: one thread may acquire it and
    another release it.
    """

    def __init__(self, path: str, timeout: float, what: str | None = None, shared: bool = False):
        self.path = path
        self.timeout = timeout
        self.what = what or path
        self.shared = shared
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self, timeout: float | None = None) -> None:
        """Take the lock; raise ``ConcurrentOperation`` after ``timeout`` (default: the
        lock's own)."""
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        fileio.private_dir(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        noticed = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout:
                    os.close(fd)
                    raise self.busy(timeout) from None
                if not noticed and waited >= WAIT_NOTICE:
                    noticed = True
                    holder = holder_of(self.path)
                    LOG.warning(
                        "Waiting for %s%s...", self.what, f" (held by {holder})" if holder else ""
                    )
                time.sleep(_POLL)
        if not self.shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def busy(self, timeout: float | None = None) -> exception.ConcurrentOperation:
        """The error for a lock held too long by someone else."""
        timeout = self.timeout if timeout is None else timeout
        holder = holder_of(self.path) or "another process"
        return exception.ConcurrentOperation(
            kind="Lock",
            name=self.what,
            reason=f"{holder} held it for more than {timeout} s (lock_timeout)",
        )


class BackendLock:
    """One backend's lock, shared by every thread and process using the backend.

    Threads take it per operation (a reentrant lock). The ``flock`` is taken by this
    process's first operation and kept until ``close``: the backend's storage is opened once
    per command (or service), and another process waits for this one to finish instead of
    slipping in between two of its operations.
    """

    def __init__(self, path: str, timeout: float, what: str):
        self.timeout = timeout
        self._file = FileLock(path, timeout, what)
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock for the block; raise ``ConcurrentOperation`` after ``timeout``."""
        timeout = self.timeout if timeout is None else timeout
        if not self._thread_lock.acquire(timeout=max(timeout, 0.001)):
            raise self._file.busy(timeout)
        try:
            if not self._file.held:
                self._file.acquire(timeout)
            yield
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Let other processes have the backend."""
        with self._thread_lock:
            self._file.release()


class OwnerToken:
    """Marks one live manager; others can tell whether the manager that owns a task died."""

    def __init__(self, directory: str):
        self.directory = directory
        self.token = uuid.uuid4().hex
        fileio.private_dir(directory)
        self._fd = os.open(self._path(self.token), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def _path(self, token: str) -> str:
        return os.path.join(self.directory, f"{token}.lock")

    def is_alive(self, token: str | None) -> bool:
        """True while the manager holding ``token`` runs (this one included)."""
        if not token:
            return False
        if token == self.token:
            return True
        try:
            fd = os.open(self._path(token), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        # Nobody holds it: its owner is gone, and so is the reason to keep the file.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(token))
        return False

    def close(self) -> None:
        """Release the token: this manager's tasks now count as abandoned."""
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(self.token))
            os.close(self._fd)
            self._fd = None
