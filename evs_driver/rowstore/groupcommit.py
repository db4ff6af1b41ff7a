"""Group commit: concurrent flushes share one data sync and one metadata commit.

One round (a data sync plus the commit of the pending metadata) runs at a time. A flush
needs a round that *starts* after it arrived: only such a round covers every write that
returned before the flush was called. So a flush arriving while a round runs waits for the
next one, and every flush that arrived meanwhile is covered by that same next round. A
round that fails raises in the thread that ran it; its waiters then run (or wait for) a
round of their own, so no flush returns without a round that covers it succeeding.
"""

import threading
from collections.abc import Callable


class GroupCommit:
    """Runs ``round_()`` for flushing threads, one round at a time, shared by all waiting."""

    def __init__(self, round_: Callable[[], None]):
        self._round = round_
        self._cond = threading.Condition(threading.Lock())
        self._started = 0  # rounds begun
        self._durable = 0  # the last round that succeeded (rounds run one after another)
        self._running = False
        #: Threads waiting for a round to end (read by tests to know a flush is queued).
        self.waiting = 0

    def _needed(self) -> int:
        """The first round that covers a flush arriving now: one not begun yet."""
        return self._started + 1

    def flush(self) -> None:
        """Return once a round that began after this call succeeded (raise if one this
        thread ran failed)."""
        with self._cond:
            needed = self._needed()
            while self._durable < needed and self._running:
                self.waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self.waiting -= 1
            if self._durable >= needed:
                return
            self._running = True
            self._started += 1
            number = self._started
        try:
            self._round()
        except BaseException:
            with self._cond:
                self._running = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._durable = number
            self._running = False
            self._cond.notify_all()
