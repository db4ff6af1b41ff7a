"""Writes in flight to librbd: a volatile write cache in front of an ``rbd.Image``.

The NBD server serves one connection's requests one at a time, and an RBD write takes a
network round trip, so synchronous writes would run at queue depth 1. A write is instead
handed to librbd (``aio_write``) and acknowledged, like a disk with a write cache. The
invariants that keep this a correct disk:
- a read, discard or write-zeroes waits for the in-flight writes it overlaps, and so does a
  write that overlaps one (so overlapping writes land in order);
- ``drain`` (before flush, FUA and close) waits for every write in flight, so a flush
  returns only after all writes acknowledged before it are done and flushed;
- a write that fails after its acknowledgement makes the device fail every later write
  and flush with that error (as a disk reports a lost cached write), never success;
- at most ``limit`` writes are in flight, and no wait lasts past ``patience`` seconds (librbd
  fails a request within the operation timeout; past that, ``TimeoutError``).
"""

import errno
import threading


class InFlight:
    """The writes handed to librbd and not yet completed, by (offset, end)."""

    def __init__(self, patience: float, limit: int = 64):
        self._patience = patience
        self._limit = limit
        self._writes: dict[int, tuple[int, int, object]] = {}  # token -> (offset, end, data)
        self._next = 0
        self._cond = threading.Condition()
        self.error = 0  # the errno of the first write that failed after its acknowledgement

    def start(self, offset: int, data: bytes) -> int:
        """Register a write before it is issued (waiting for overlaps and room); its token."""
        end = offset + len(data)
        with self._cond:
            self._wait(lambda: len(self._writes) < self._limit and not self._overlaps(offset, end))
            token = self._next
            self._next += 1
            self._writes[token] = (offset, end, data)  # keeps the buffer alive for librbd
            return token

    def done(self, token: int, result: int) -> None:
        """librbd's completion (on its own thread): forget the write, keep a failure."""
        with self._cond:
            self._writes.pop(token, None)
            if result < 0 and not self.error:
                self.error = -result
            self._cond.notify_all()

    def wait_range(self, offset: int, length: int) -> None:
        """Wait until no write in flight overlaps ``[offset, offset + length)``."""
        with self._cond:
            self._wait(lambda: not self._overlaps(offset, offset + length))

    def drain(self) -> None:
        """Wait until every write in flight has completed."""
        with self._cond:
            self._wait(lambda: not self._writes)

    def _wait(self, predicate) -> None:
        if not self._cond.wait_for(predicate, self._patience):
            if not self.error:
                self.error = errno.ETIMEDOUT
            raise TimeoutError(errno.ETIMEDOUT, "writes in flight did not complete")

    def _overlaps(self, offset: int, end: int) -> bool:
        return any(o < end and offset < e for o, e, _ in self._writes.values())
