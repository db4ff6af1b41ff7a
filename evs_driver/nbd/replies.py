"""Simple replies, coalesced: many replies leave in one ``sendmsg``.

While more requests are already buffered, replies wait in a queue and read data waits
in a reused arena; the queue is sent before the connection would block on the client
(``SocketReader.before_wait``), when it is long, or when the arena is full. Order is
kept, so a client sees replies exactly as if each was sent at once.

The arena is the connection's whole budget for read data (``Limits.max_bytes_in_flight``):
a read larger than it is sent piece by piece through it (``scratch`` and ``send_piece``),
and nothing new is read from the client while a send waits for it to make room.
"""

import mmap
import socket
import ssl

from evs_driver import exception
from evs_driver.nbd import protocol as p
from evs_driver.nbd.limits import Limits
from evs_driver.nbd.stream import TIMED_OUT

ARENA_SIZE = Limits().max_bytes_in_flight
MAX_PARTS = 256  # iovecs per sendmsg, well under IOV_MAX (1024)
_TLS_RECORD = 64 * 1024  # TLS has no sendmsg: small parts are joined up to this size


class ReplyWriter:
    """Queues simple replies of one connection and sends them in batches."""

    def __init__(self, sock: socket.socket, arena_size: int = ARENA_SIZE):
        self._sock = sock
        # Anonymous memory: pages count against the process only once a reply used them.
        self._arena = memoryview(mmap.mmap(-1, arena_size))
        self.arena_size = arena_size
        self._used = 0
        self._parts: list = []
        self._pack = p.SIMPLE_REPLY.pack
        self._send = self._send_tls if isinstance(sock, ssl.SSLSocket) else self._sendmsg

    def reply(self, cookie: int, error: int) -> None:
        """Queue a reply without data (writes, flushes, errors)."""
        self._parts.append(self._pack(p.SIMPLE_REPLY_MAGIC, error, cookie))
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def buffer(self, length: int) -> memoryview:
        """Arena space for a read's data (``length`` at most ``arena_size``)."""
        if self._used + length > self.arena_size:
            self.flush()
        start = self._used
        self._used = start + length
        return self._arena[start : start + length]

    def data(self, cookie: int, view: memoryview) -> None:
        """Queue a successful read's reply; ``view`` must stay unchanged until sent."""
        self._parts.append(self._pack(p.SIMPLE_REPLY_MAGIC, 0, cookie))
        self._parts.append(view)
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def scratch(self, length: int) -> memoryview:
        """The arena's first ``length`` bytes for one piece of a large request (queue sent)."""
        self.flush()
        return self._arena[:length]

    def send_piece(self, cookie: int, view: memoryview, first: bool) -> None:
        """Send one piece of a large read's data (after its reply header, for the first)."""
        if first:
            self._parts.append(self._pack(p.SIMPLE_REPLY_MAGIC, 0, cookie))
        self._parts.append(view)
        self.flush()

    def flush(self) -> None:
        """Send every queued reply."""
        parts = self._parts
        if not parts:
            return
        try:
            self._send(parts)
        except TIMED_OUT:
            raise exception.NBDTimeout(reason="it stopped reading its replies") from None
        parts.clear()
        self._used = 0

    def _sendmsg(self, parts: list) -> None:
        sent = self._sock.sendmsg(parts)
        if sent < sum(map(len, parts)):
            for part in parts:
                size = len(part)
                if sent >= size:
                    sent -= size
                    continue
                self._sock.sendall(memoryview(part)[sent:])
                sent = 0

    def _send_tls(self, parts: list) -> None:
        batch = bytearray()
        for part in parts:
            if len(part) >= _TLS_RECORD:
                if batch:
                    self._sock.sendall(batch)
                    batch = bytearray()
                self._sock.sendall(part)
                continue
            batch += part
            if len(batch) >= _TLS_RECORD:
                self._sock.sendall(batch)
                batch = bytearray()
        if batch:
            self._sock.sendall(batch)
