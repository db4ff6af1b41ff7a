"""Simple replies, coalesced: many replies leave in one ``sendmsg``.

While more requests are already buffered, replies wait in a queue and read data waits
in a reused arena; the queue is sent before the connection would block on the client
(``SocketReader.before_wait``), when it is long, or when the arena is full. Order is
kept, so a client sees replies exactly as if each was sent at once.
"""

import socket

from evs_driver.nbd import protocol as p

ARENA_SIZE = 1024 * 1024
MAX_PARTS = 256  # iovecs per sendmsg, well under IOV_MAX (1024)


class ReplyWriter:
    """Queues simple replies of one connection and sends them in batches."""

    def __init__(self, sock: socket.socket, arena_size: int = ARENA_SIZE):
        self._sock = sock
        self._arena = memoryview(bytearray(arena_size))
        self._used = 0
        self._parts: list = []
        self._pack = p.SIMPLE_REPLY.pack

    def reply(self, cookie: int, error: int) -> None:
        """Queue a reply without data (writes, flushes, errors)."""
        self._parts.append(self._pack(p.SIMPLE_REPLY_MAGIC, error, cookie))
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def buffer(self, length: int) -> memoryview | None:
        """Arena space for a read's data, or None when it is larger than the arena."""
        if length > len(self._arena):
            return None
        if self._used + length > len(self._arena):
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

    def send_now(self, cookie: int, view: memoryview) -> None:
        """Send queued replies, then a read reply whose data lives outside the arena."""
        self.data(cookie, view)
        self.flush()

    def flush(self) -> None:
        """Send every queued reply."""
        parts = self._parts
        if not parts:
            return
        sent = self._sock.sendmsg(parts)
        if sent < sum(map(len, parts)):
            self._send_rest(parts, sent)
        parts.clear()
        self._used = 0

    def _send_rest(self, parts: list, sent: int) -> None:
        for part in parts:
            size = len(part)
            if sent >= size:
                sent -= size
                continue
            self._sock.sendall(memoryview(part)[sent:])
            sent = 0
