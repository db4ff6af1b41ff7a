"""A reader-writer lock: many readers or one writer (writers are not starved).

Every data-path call takes one, so it is kept cheap: ``read()`` and ``write()`` return one
reusable guard each (no generator per use), the state sits behind a plain lock, and
nothing wakes waiters unless one waits.
"""

import threading


class RWLock:
    """Readers share; a waiting writer blocks new readers."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._read = _Reading(self)
        self._write = _Writing(self)

    def read(self) -> "_Reading":
        """``with lock.read():`` shares the lock with other readers."""
        return self._read

    def write(self) -> "_Writing":
        """``with lock.write():`` holds the lock alone."""
        return self._write


class _Guard:
    """One side of a lock, entered with ``with`` (one per lock, shared by every thread: it
    holds no state of its own)."""

    __slots__ = ("_rw",)

    def __init__(self, rw: RWLock):
        self._rw = rw


class _Reading(_Guard):
    """The reader's side."""

    __slots__ = ()

    def __enter__(self) -> None:
        rw = self._rw
        with rw._lock:
            if rw._writer or rw._writers_waiting:
                rw._readers_waiting += 1
                while rw._writer or rw._writers_waiting:
                    rw._cond.wait()
                rw._readers_waiting -= 1
            rw._readers += 1

    def __exit__(self, *exc) -> None:
        rw = self._rw
        with rw._lock:
            rw._readers -= 1
            if not rw._readers and rw._writers_waiting:
                rw._cond.notify_all()


class _Writing(_Guard):
    """The writer's side."""

    __slots__ = ()

    def __enter__(self) -> None:
        rw = self._rw
        with rw._lock:
            rw._writers_waiting += 1
            while rw._writer or rw._readers:
                rw._cond.wait()
            rw._writers_waiting -= 1
            rw._writer = True

    def __exit__(self, *exc) -> None:
        rw = self._rw
        with rw._lock:
            rw._writer = False
            if rw._writers_waiting or rw._readers_waiting:
                rw._cond.notify_all()
