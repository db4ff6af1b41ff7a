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
- at most ``limit`` writes are in flight.
Completions are waited for by the caller (librbd's own wait, bounded by the operation
timeout), never signalled from librbd's threads: no lock is shared with them, which also
keeps this safe under eventlet's monkey patching (Cinder).
"""

import threading


class InFlight:
    """The writes handed to librbd and not yet reaped, oldest first."""

    def __init__(self, limit: int = 64):
        self._limit = limit
        self._writes: list[tuple[int, int, object, object]] = []  # offset, end, data, completion
        self._lock = threading.Lock()  # the callers' threads only
        self.error = 0  # the errno of the first write that failed after its acknowledgement

    def issue(self, offset: int, data: bytes, submit) -> None:
        """Wait for overlapping writes and for room, then ``submit()`` (returns a completion)."""
        end = offset + len(data)
        self.wait_range(offset, len(data))
        with self._lock:
            while len(self._writes) >= self._limit:
                self._finish(self._writes[0])
            # The entry keeps the buffer alive while librbd may read it.
            self._writes.append((offset, end, data, submit()))

    def wait_range(self, offset: int, length: int) -> None:
        """Wait until no write in flight overlaps ``[offset, offset + length)``."""
        end = offset + length
        with self._lock:
            self._reap()
            for entry in [w for w in self._writes if w[0] < end and offset < w[1]]:
                self._finish(entry)

    def drain(self) -> None:
        """Wait until every write in flight has completed."""
        with self._lock:
            while self._writes:
                self._finish(self._writes[0])

    def _reap(self) -> None:
        for entry in [w for w in self._writes if w[3].is_complete()]:
            self._finish(entry)

    def _finish(self, entry) -> None:
        completion = entry[3]
        completion.wait_for_complete_and_cb()
        result = completion.get_return_value()
        if result < 0 and not self.error:
            self.error = -result
        self._writes.remove(entry)
