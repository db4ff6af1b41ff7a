"""Replies, coalesced: many replies leave in one ``sendmsg``.

While more requests are already buffered, replies wait in a queue and read data waits
in a reused arena; the queue is sent before the connection would block on the client
(``SocketReader.before_wait``), when it is long, or when the arena is full. Order is
kept, so a client sees replies exactly as if each was sent at once.

The arena is the connection's whole budget for read data (``Limits.max_bytes_in_flight``):
a read larger than it is sent piece by piece through it (``scratch`` and ``send_piece``),
and nothing new is read from the client while a send waits for it to make room.

Once the client negotiated structured replies, reads are answered with chunks (data at an
offset, or an error, possibly at an offset) and BLOCK_STATUS with one chunk a context;
other commands keep simple replies, which the protocol allows when there is no payload.
"""

import mmap
import socket
import ssl
import threading

from evs_driver import exception
from evs_driver.blockdev import Extents
from evs_driver.nbd import protocol as p
from evs_driver.nbd.limits import Limits
from evs_driver.nbd.stream import TIMED_OUT

ARENA_SIZE = Limits().max_bytes_in_flight
MAX_PARTS = 256  # iovecs per sendmsg, well under IOV_MAX (1024)
_TLS_RECORD = 64 * 1024  # TLS has no sendmsg: small parts are joined up to this size
_MAGIC = p.STRUCTURED_REPLY_MAGIC
_DONE = p.REPLY_FLAG_DONE


class ReplyWriter:
    """Queues the replies of one connection and sends them in batches."""

    def __init__(self, sock: socket.socket, arena_size: int = ARENA_SIZE, structured=False):
        self._sock = sock
        # Anonymous memory: pages count against the process only once a reply used them.
        self._arena = memoryview(mmap.mmap(-1, arena_size))
        self.arena_size = arena_size
        self.structured = structured
        self._used = 0
        self._parts: list = []
        self._pack = p.SIMPLE_REPLY.pack
        self._send = self._send_tls if isinstance(sock, ssl.SSLSocket) else self._sendmsg
        # Held by each send: a flush thread answers beside the request loop (``flushing``).
        self._sending = threading.Lock()

    def reply(self, cookie: int, error: int) -> None:
        """Queue a reply without data (writes, flushes, errors other than a read's)."""
        self._parts.append(self._pack(p.SIMPLE_REPLY_MAGIC, error, cookie))
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def read_error(self, cookie: int, error: int, offset: int | None = None) -> None:
        """Queue a failed read's reply; ``offset`` where it failed, after data was sent."""
        if not self.structured:
            self.reply(cookie, error)
            return
        if offset is None:
            body = p.ERROR_BODY.pack(error, 0)
            kind = p.REPLY_TYPE_ERROR
        else:
            body = p.ERROR_BODY.pack(error, 0) + p.OFFSET.pack(offset)
            kind = p.REPLY_TYPE_ERROR_OFFSET
        self._parts.append(p.CHUNK.pack(_MAGIC, _DONE, kind, cookie, len(body)) + body)
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def buffer(self, length: int) -> memoryview:
        """Arena space for a read's data (``length`` at most ``arena_size``)."""
        if self._used + length > self.arena_size:
            self.flush()
        start = self._used
        self._used = start + length
        return self._arena[start : start + length]

    def data(self, cookie: int, offset: int, view: memoryview) -> None:
        """Queue a successful read's reply; ``view`` must stay unchanged until sent."""
        if self.structured:
            if not view:  # a data chunk holds at least a byte: an empty read gets NONE
                self._parts.append(p.CHUNK.pack(_MAGIC, _DONE, p.REPLY_TYPE_NONE, cookie, 0))
                return
            kind = p.REPLY_TYPE_OFFSET_DATA
            header = p.DATA_CHUNK.pack(_MAGIC, _DONE, kind, cookie, 8 + len(view), offset)
        else:
            header = self._pack(p.SIMPLE_REPLY_MAGIC, 0, cookie)
        self._parts.append(header)
        self._parts.append(view)
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def scratch(self, length: int) -> memoryview:
        """The arena's first ``length`` bytes for one piece of a large request (queue sent)."""
        self.flush()
        return self._arena[:length]

    def send_piece(self, cookie: int, offset: int, view: memoryview, first: bool, last: bool):
        """Send one piece of a large read: a chunk each when structured, else one reply
        header before the first piece."""
        if self.structured:
            flags = _DONE if last else 0
            kind = p.REPLY_TYPE_OFFSET_DATA
            self._parts.append(
                p.DATA_CHUNK.pack(_MAGIC, flags, kind, cookie, 8 + len(view), offset)
            )
        elif first:
            self._parts.append(self._pack(p.SIMPLE_REPLY_MAGIC, 0, cookie))
        self._parts.append(view)
        self.flush()

    def block_status(self, cookie: int, answers: list[tuple[int, Extents]]) -> None:
        """Queue a BLOCK_STATUS reply: one chunk of descriptors for each (context id, runs)."""
        for number, (context_id, runs) in enumerate(answers, start=1):
            body = p.CONTEXT_ID.pack(context_id) + b"".join(p.EXTENT.pack(*run) for run in runs)
            flags = _DONE if number == len(answers) else 0
            header = p.CHUNK.pack(_MAGIC, flags, p.REPLY_TYPE_BLOCK_STATUS, cookie, len(body))
            self._parts.append(header + body)
        if len(self._parts) >= MAX_PARTS:
            self.flush()

    def flush(self) -> None:
        """Send every queued reply."""
        parts = self._parts
        if not parts:
            return
        self._send_locked(parts)
        parts.clear()
        self._used = 0

    def send_now(self, cookies: list[int], error: int) -> None:
        """Send simple replies at once, from any thread (queued replies are not touched)."""
        self._send_locked([self._pack(p.SIMPLE_REPLY_MAGIC, error, c) for c in cookies])

    def _send_locked(self, parts: list) -> None:
        try:
            with self._sending:
                self._send(parts)
        except TIMED_OUT:
            raise exception.NBDTimeout(reason="it stopped reading its replies") from None

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
