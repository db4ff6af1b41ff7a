"""Locks that hold across threads and processes, and a liveness token per manager.

A ``ProcessLock`` is a thread lock plus ``flock`` on a file: ``flock`` locks belong to an
open file description, so they also exclude other processes, and the kernel drops them
when a process dies, so a crash never leaves a lock behind.
"""

import contextlib
import errno
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator

from evs_driver import exception, fileio

_POLL = 0.05


class FileLock:
    """An exclusive ``flock`` on ``path``, waited for up to ``timeout`` seconds.

    Not bound to a thread: one thread may acquire it and another release it.
    """

    def __init__(self, path: str, timeout: float):
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; raise ``ConcurrentOperation`` after ``timeout``."""
        deadline = time.monotonic() + self.timeout
        fileio.private_dir(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise self.busy() from None
                time.sleep(_POLL)

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def busy(self) -> exception.ConcurrentOperation:
        """The error for a lock held too long by someone else."""
        return exception.ConcurrentOperation(
            kind="Lock",
            name=self.path,
            reason=f"another operation held it for more than {self.timeout} s (lock_timeout)",
        )


class ProcessLock:
    """A reentrant lock on ``path`` shared by every thread and process using that path."""

    def __init__(self, path: str, timeout: float):
        self.path = path
        self.timeout = timeout
        self._file = FileLock(path, timeout)
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the block; raise ``ConcurrentOperation`` after ``timeout``."""
        if not self._thread_lock.acquire(timeout=max(self.timeout, 0.001)):
            raise self._file.busy()
        try:
            if self._depth == 0:
                self._file.acquire()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._file.release()
        finally:
            self._thread_lock.release()


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
