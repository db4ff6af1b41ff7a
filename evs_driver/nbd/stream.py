"""Buffered socket reads into one reused buffer, so parsing a request allocates nothing.

Invariant: bytes ``[start, end)`` of ``buffer`` are received but not yet consumed; a
region handed out by ``take`` stays valid until the next call on the reader.

Waiting is bounded two ways: during the handshake by ``deadline`` (a whole-handshake limit),
afterwards by the socket's I/O timeout (``set_io_timeout``), which only counts while a
message is half received: a client may stay idle between requests as long as it likes.
"""

import socket
import ssl
import struct
import time

from evs_driver import exception
from evs_driver.nbd.limits import RECEIVE_BUFFER

BETWEEN_REQUESTS = "between requests"
# Raised when a socket timeout expires: TimeoutError in Python's timeout mode (TLS
# sockets), BlockingIOError (EAGAIN) for a blocking socket with SO_RCVTIMEO/SO_SNDTIMEO.
TIMED_OUT = (TimeoutError, BlockingIOError)


def set_io_timeout(sock: socket.socket, seconds: float | None) -> None:
    """Make a blocked send or receive on ``sock`` fail after ``seconds`` without progress."""
    if isinstance(sock, ssl.SSLSocket):
        # The ssl module retries a read that SO_RCVTIMEO interrupts, so use its own timeout.
        sock.settimeout(seconds)
        return
    # A kernel timeout on a blocking socket costs no extra system call per send or receive.
    sock.settimeout(None)
    whole = int(seconds or 0)
    timeval = struct.pack("ll", whole, int(((seconds or 0) - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class SocketReader:
    """Reads exact-length pieces of a byte stream with as few ``recv`` calls as possible."""

    def __init__(self, sock: socket.socket, size: int = RECEIVE_BUFFER):
        self.sock = sock
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self._start = 0
        self._end = 0
        #: Called before a read that has to wait for the client (sends queued replies).
        self.before_wait = None
        #: ``time.monotonic()`` by which reads must be done (the handshake), or None.
        self.deadline: float | None = None

    @property
    def capacity(self) -> int:
        """Largest piece ``take`` can return."""
        return len(self.buffer)

    @property
    def pending(self) -> int:
        """Bytes received and not consumed yet."""
        return self._end - self._start

    def take(self, length: int, where: str = BETWEEN_REQUESTS) -> int:
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
            got = self._recv_into(target[have:], where, idle=False)
            if not got:
                raise exception.NBDDisconnected(where=where)
            have += got

    def skip(self, length: int, where: str = "in a request payload") -> None:
        """Consume and drop ``length`` bytes of any size."""
        while length:
            step = min(length, self.capacity)
            self.take(step, where)
            length -= step

    def resize(self, size: int) -> None:
        """Use a buffer of ``size`` bytes from now on, keeping what is pending."""
        pending = self.view[self._start : self._end]
        if len(pending) > size:
            raise exception.InvalidInput(reason=f"{len(pending)} pending bytes exceed {size}")
        buffer = bytearray(size)
        buffer[: len(pending)] = pending
        self.buffer, self.view = buffer, memoryview(buffer)
        self._start, self._end = 0, len(pending)

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
            idle = where is BETWEEN_REQUESTS and self._end == self._start
            got = self._recv_into(self.view[self._end :], where, idle)
            if not got:
                if self._end > self._start:
                    where = "in the middle of a message"
                raise exception.NBDDisconnected(where=where)
            self._end += got

    def _recv_into(self, target: memoryview, where: str, idle: bool) -> int:
        """One receive; a timeout between requests is waited out, elsewhere it is fatal."""
        while True:
            if self.deadline is not None:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    raise exception.NBDTimeout(reason="it did not finish the handshake in time")
                self.sock.settimeout(remaining)
            try:
                return self.sock.recv_into(target)
            except TIMED_OUT:
                if self.deadline is not None:
                    continue  # the check above raises
                if not idle:
                    if where is BETWEEN_REQUESTS:
                        where = "in the middle of a request"
                    raise exception.NBDTimeout(reason=f"it stopped sending {where}") from None
