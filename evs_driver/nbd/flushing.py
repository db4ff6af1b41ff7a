"""FLUSH off the request loop: a connection keeps serving while its flushes sync.

NBD lets a server answer requests in any order, and a FLUSH covers only the writes that
completed before it was received. The request loop has finished every earlier request when
it reads a FLUSH, so it hands the cookie to this connection's flush thread and goes on; the
thread runs one device flush for every FLUSH queued when that flush begins (each was
received before it, so it covers them all) and answers them. The device's own flush may
then share its sync with other connections (the pool's group commit).

Used only for devices that say their flush may run beside their other calls
(``concurrent_flush``) and for plain sockets: a TLS connection's one OpenSSL object must not
send from one thread while another receives.
"""

import logging
import threading
from collections.abc import Callable

from evs_driver import exception

LOG = logging.getLogger(__name__)

#: FLUSH requests a connection may have waiting; more make its request loop wait.
MAX_WAITING = 1024


class Flusher:
    """Answers one connection's FLUSH requests from a thread of its own."""

    def __init__(
        self,
        flush: Callable[[], int],
        answer: Callable[[list[int], int], None],
        hang_up: Callable[[], None],
    ):
        """``flush()`` flushes the device and returns an NBD error (0: done);
        ``answer(cookies, error)`` sends those replies at once, from the flush thread;
        ``hang_up()`` ends the connection when they cannot be sent."""
        self._flush = flush
        self._answer = answer
        self._hang_up = hang_up
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[int] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self._broken = False  # the replies cannot be sent any more

    def submit(self, cookie: int) -> None:
        """Queue a FLUSH received now (every earlier request is done); answered later."""
        with self._cond:
            if self._thread is None:  # most connections never flush: no thread until one does
                self._thread = threading.Thread(target=self._run, name="nbd-flush", daemon=True)
                self._thread.start()
            while len(self._waiting) >= MAX_WAITING:
                self._cond.wait()
            self._waiting.append(cookie)
            self._cond.notify_all()

    def close(self) -> None:
        """Answer every queued FLUSH, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
                self._cond.notify_all()
            error = self._flush()
            if self._broken:
                continue
            try:
                self._answer(batch, error)
            except (OSError, exception.NBDTimeout) as exc:
                # The request loop may be waiting for a request: wake it to end the connection.
                LOG.debug("NBD flush replies could not be sent: %s", exc)
                self._broken = True
                self._hang_up()
