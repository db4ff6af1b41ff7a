"""The transmission phase: serve one connection's requests in order, with simple replies.

Requests are handled one at a time in arrival order while the client keeps sending
(pipelining), so a FLUSH is answered only after every earlier write returned and the
device's flush returned. Payloads go straight from the socket into reused buffers, and
replies are coalesced (see ``replies``) so a burst of requests costs few system calls.
"""

import logging
import socket

from evs_driver import exception
from evs_driver.nbd import protocol as p
from evs_driver.nbd.errmap import nbd_error
from evs_driver.nbd.handshake import Session
from evs_driver.nbd.replies import ReplyWriter
from evs_driver.nbd.stream import SocketReader

LOG = logging.getLogger(__name__)

_ZERO_CHUNK = 1024 * 1024  # how much an allocating WRITE_ZEROES writes per call
_KNOWN_FLAGS = p.CMD_FLAG_FUA | p.CMD_FLAG_NO_HOLE


class Transmission:
    """Serves the requests of one negotiated connection until DISC or a broken stream."""

    def __init__(self, sock: socket.socket, reader: SocketReader, session: Session, max_block: int):
        self._reader = reader
        self._replies = ReplyWriter(sock)
        # Replies must be on their way before we wait for the client, or both sides wait.
        reader.before_wait = self._replies.flush
        self._device = session.device
        self._size = session.size
        self._read_only = bool(session.flags & p.TFLAG_READ_ONLY)
        self._max_block = max_block
        self._payload = bytearray(0)
        self._zeros = b""

    def run(self) -> None:
        """Serve until the client sends DISC; raise ``NBDDisconnected``/``NBDProtocolError``."""
        try:
            self._serve()
        finally:
            self._reader.before_wait = None
        self._replies.flush()

    def _serve(self) -> None:
        reader = self._reader
        buffer = reader.buffer
        take = reader.take
        unpack = p.REQUEST.unpack_from
        replies = self._replies
        readinto = self._device.readinto
        size = self._size
        max_block = self._max_block
        while True:
            magic, flags, command, cookie, offset, length = unpack(buffer, take(28))
            if magic != p.REQUEST_MAGIC:
                raise exception.NBDProtocolError(reason=f"bad request magic {magic:#x}")
            if command == p.CMD_READ:
                # The hot path, kept inline.
                if flags & ~_KNOWN_FLAGS or length > max_block or offset + length > size:
                    replies.reply(cookie, p.EINVAL)
                    continue
                view = replies.buffer(length)
                own = view is None
                if own:
                    view = self._buffer(length)
                try:
                    readinto(offset, view)
                except Exception as exc:
                    replies.reply(cookie, self._failed("read", offset, length, exc))
                    continue
                if own:
                    replies.send_now(cookie, view)
                else:
                    replies.data(cookie, view)
            elif command == p.CMD_WRITE:
                replies.reply(cookie, self._write(flags, cookie, offset, length))
            elif command == p.CMD_FLUSH:
                replies.flush()  # finished requests are not held back by a slow sync
                error = p.EINVAL if flags & ~_KNOWN_FLAGS else self._call(self._flush)
                replies.reply(cookie, error)
            elif command == p.CMD_TRIM:
                replies.reply(cookie, self._modify(flags, offset, length, self._trim))
            elif command == p.CMD_WRITE_ZEROES:
                replies.reply(cookie, self._modify(flags, offset, length, self._write_zeroes))
            elif command == p.CMD_DISC:
                return
            else:
                replies.reply(cookie, p.EINVAL)

    # -- commands --------------------------------------------------------------------------
    def _write(self, flags: int, cookie: int, offset: int, length: int) -> int:
        reader = self._reader
        if length > self._max_block:
            # The payload cannot be trusted to follow: answer, then hang up.
            self._replies.reply(cookie, p.EINVAL)
            self._replies.flush()
            raise exception.NBDProtocolError(reason=f"write of {length} bytes over the maximum")
        error = self._check(flags, offset, length)
        if error:
            reader.skip(length)
            return error
        if length <= reader.capacity:
            start = reader.take(length, "in a write payload")
            data = reader.view[start : start + length]
        else:
            data = self._buffer(length)
            reader.readinto(data, "in a write payload")
        fua = bool(flags & p.CMD_FLAG_FUA)
        if fua:
            self._replies.flush()
        try:
            self._device.write(offset, data, fua)
        except Exception as exc:
            return self._failed("write", offset, length, exc)
        return 0

    def _modify(self, flags: int, offset: int, length: int, action) -> int:
        error = self._check(flags, offset, length)
        if error:
            return error
        return self._call(action, offset, length, flags)

    def _flush(self) -> None:
        self._device.flush()

    def _trim(self, offset: int, length: int, flags: int) -> None:
        self._device.discard(offset, length)
        if flags & p.CMD_FLAG_FUA:
            self._device.flush()

    def _write_zeroes(self, offset: int, length: int, flags: int) -> None:
        if flags & p.CMD_FLAG_NO_HOLE:
            # The client wants the range allocated: write real zeros.
            if not self._zeros:
                self._zeros = bytes(_ZERO_CHUNK)
            end = offset + length
            while offset < end:
                step = min(_ZERO_CHUNK, end - offset)
                self._device.write(offset, memoryview(self._zeros)[:step])
                offset += step
        else:
            self._device.write_zeroes(offset, length)
        if flags & p.CMD_FLAG_FUA:
            self._device.flush()

    # -- helpers ---------------------------------------------------------------------------
    def _check(self, flags: int, offset: int, length: int) -> int:
        """The error for a modifying request, or 0 when it may go to the device."""
        if flags & ~_KNOWN_FLAGS or offset + length > self._size:
            return p.EINVAL
        if self._read_only:
            return p.EPERM
        return 0

    def _call(self, action, *args) -> int:
        try:
            action(*args)
        except Exception as exc:
            return self._failed(action.__name__.strip("_"), args[:1], args[1:2], exc)
        return 0

    def _failed(self, what: str, offset, length, exc: Exception) -> int:
        error = nbd_error(exc)
        LOG.warning("NBD %s %s+%s failed (NBD error %d): %s", what, offset, length, error, exc)
        return error

    def _buffer(self, length: int) -> memoryview:
        """A reused buffer for payloads too large for the reader or the reply arena."""
        if length > len(self._payload):
            self._payload = bytearray(length)
        return memoryview(self._payload)[:length]
