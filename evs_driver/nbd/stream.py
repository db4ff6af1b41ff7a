"""Buffered socket reads into one reused buffer, so parsing a request allocates nothing.

Invariant: bytes ``[start, end)`` of ``buffer`` are received but not yet consumed; a
region handed out by ``take`` stays valid until the next call on the reader.
"""

import socket

from evs_driver import exception

DEFAULT_BUFFER = 256 * 1024


class SocketReader:
    """Reads exact-length pieces of a byte stream with as few ``recv`` calls as possible."""

    def __init__(self, sock: socket.socket, size: int = DEFAULT_BUFFER):
        self._sock = sock
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self._start = 0
        self._end = 0
        #: Called before a read that has to wait for the client (sends queued replies).
        self.before_wait = None

    @property
    def capacity(self) -> int:
        """Largest piece ``take`` can return."""
        return len(self.buffer)

    def take(self, length: int, where: str = "between requests") -> int:
        """Consume ``length`` bytes (at most ``capacity``) and return their offset in ``buffer``."""
        if self._end - self._start < length:
            self._fill(length, where)
        start = self._start
        self._start = start + length
        return start

    def read(self, length: int, where: str = "during negotiation") -> bytes:
        """Consume ``length`` bytes (at most ``capacity``) and return a copy."""
        start = self.take(length, where)
        return bytes(self.view[start : start + length])

    def readinto(self, target: memoryview, where: str = "in a request payload") -> None:
        """Fill ``target`` (any length): buffered bytes first, then straight from the socket."""
        have = min(self._end - self._start, len(target))
        if have:
            target[:have] = self.view[self._start : self._start + have]
            self._start += have
        if have < len(target) and self.before_wait is not None:
            self.before_wait()
        while have < len(target):
            got = self._sock.recv_into(target[have:])
            if not got:
                raise exception.NBDDisconnected(where=where)
            have += got

    def skip(self, length: int, where: str = "in a request payload") -> None:
        """Consume and drop ``length`` bytes of any size."""
        while length:
            step = min(length, self.capacity)
            self.take(step, where)
            length -= step

    def _fill(self, length: int, where: str) -> None:
        pending = self._end - self._start
        if not pending:
            self._start = self._end = 0
        elif self._start + length > len(self.buffer):
            # Too little room behind the pending bytes: move them to the front.
            self.view[:pending] = self.view[self._start : self._end]
            self._start, self._end = 0, pending
        if self.before_wait is not None:
            self.before_wait()
        while self._end - self._start < length:
            got = self._sock.recv_into(self.view[self._end :])
            if not got:
                if self._end > self._start:
                    where = "in the middle of a message"
                raise exception.NBDDisconnected(where=where)
            self._end += got
