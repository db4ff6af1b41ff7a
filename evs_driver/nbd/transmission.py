"""The transmission phase: serve one connection's requests in order.

Requests are handled one at a time in arrival order while the client keeps sending
(pipelining), so a FLUSH is answered only after every earlier write returned and the
device's flush returned; where the device allows, that flush runs in a thread of its own
while later requests are served (``flushing``). Payloads go straight from the socket into
reused buffers, and replies are coalesced (see ``replies``) so a burst of requests costs few
system calls. Reads and writes larger than the reply arena go through it piece by piece, so
a connection never holds more than the arena however large its requests.
"""

import logging
import socket
import ssl

from evs_driver import exception
from evs_driver.nbd import metacontext
from evs_driver.nbd import protocol as p
from evs_driver.nbd.errmap import nbd_error
from evs_driver.nbd.flushing import Flusher
from evs_driver.nbd.replies import ARENA_SIZE, ReplyWriter
from evs_driver.nbd.session import Session
from evs_driver.nbd.stream import SocketReader

LOG = logging.getLogger(__name__)

_ZERO_CHUNK = 1024 * 1024  # how much an allocating WRITE_ZEROES writes per call
_KNOWN_FLAGS = p.CMD_FLAG_FUA | p.CMD_FLAG_NO_HOLE
_STATUS_FLAGS = p.CMD_FLAG_FUA | p.CMD_FLAG_REQ_ONE  # (clients are known to send FUA anywhere)


class Transmission:
    """Serves the requests of one negotiated connection until DISC or a broken stream."""

    def __init__(
        self,
        sock: socket.socket,
        reader: SocketReader,
        session: Session,
        max_block: int,
        in_flight: int = ARENA_SIZE,
    ):
        self._reader = reader
        self._replies = ReplyWriter(sock, in_flight, session.structured)
        # Replies must be on their way before we wait for the client, or both sides wait.
        reader.before_wait = self._replies.flush
        self._device = session.device
        self._size = session.size
        self._read_only = bool(session.flags & p.TFLAG_READ_ONLY)
        self._max_block = max_block
        self._contexts = list(enumerate(session.contexts, start=1))  # ids as the handshake gave
        self._zeros = b""
        self._flusher = None
        if getattr(self._device, "concurrent_flush", False) and not isinstance(sock, ssl.SSLSocket):
            self._flusher = Flusher(
                lambda: self._call(self._flush), self._replies.send_now, lambda: _hang_up(sock)
            )

    def run(self) -> None:
        """Serve until the client sends DISC; raise ``NBDDisconnected``/``NBDProtocolError``."""
        try:
            self._serve()
        finally:
            self._reader.before_wait = None
            if self._flusher is not None:
                self._flusher.close()  # every FLUSH received is answered (or the link is gone)
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
        arena = replies.arena_size
        while True:
            magic, flags, command, cookie, offset, length = unpack(buffer, take(28))
            if magic != p.REQUEST_MAGIC:
                raise exception.NBDProtocolError(reason=f"bad request magic {magic:#x}")
            if command == p.CMD_READ:
                # The hot path, kept inline.
                if flags & ~_KNOWN_FLAGS or length > max_block or offset + length > size:
                    replies.read_error(cookie, p.EINVAL)
                    continue
                if length > arena:
                    self._read_in_pieces(cookie, offset, length)
                    continue
                view = replies.buffer(length)
                try:
                    readinto(offset, view)
                except Exception as exc:
                    replies.read_error(cookie, self._failed("read", offset, length, exc))
                    continue
                replies.data(cookie, offset, view)
            elif command == p.CMD_WRITE:
                replies.reply(cookie, self._write(flags, cookie, offset, length))
            elif command == p.CMD_FLUSH:
                replies.flush()  # finished requests are not held back by a slow sync
                if flags & ~_KNOWN_FLAGS:
                    replies.reply(cookie, p.EINVAL)
                elif self._flusher is not None:
                    self._flusher.submit(cookie)  # answered once a flush begun from now returns
                else:
                    replies.reply(cookie, self._call(self._flush))
            elif command == p.CMD_TRIM:
                replies.reply(cookie, self._modify(flags, offset, length, self._trim))
            elif command == p.CMD_WRITE_ZEROES:
                replies.reply(cookie, self._modify(flags, offset, length, self._write_zeroes))
            elif command == p.CMD_BLOCK_STATUS:
                self._block_status(flags, cookie, offset, length)
            elif command == p.CMD_DISC:
                return
            else:
                replies.reply(cookie, p.EINVAL)

    # -- commands --------------------------------------------------------------------------
    def _read_in_pieces(self, cookie: int, offset: int, length: int) -> None:
        replies = self._replies
        end = offset + length
        start = offset
        while start < end:
            view = replies.scratch(min(replies.arena_size, end - start))
            try:
                self._device.readinto(start, view)
            except Exception as exc:
                error = self._failed("read", start, len(view), exc)
                if start == offset:
                    replies.read_error(cookie, error)  # nothing sent yet: a plain error
                elif replies.structured:
                    replies.read_error(cookie, error, offset=start)  # the pieces before hold
                else:
                    # The reply header already said success: only hanging up is left.
                    raise exception.NBDHangUp(reason=f"read failed after a piece: {exc}") from exc
                return
            last = start + len(view) == end
            replies.send_piece(cookie, start, view, first=start == offset, last=last)
            start += len(view)

    def _block_status(self, flags: int, cookie: int, offset: int, length: int) -> None:
        if (
            not self._contexts
            or flags & ~_STATUS_FLAGS
            or not length
            or offset + length > self._size
        ):
            self._replies.reply(cookie, p.EINVAL)  # (also: no context was selected)
            return
        one = bool(flags & p.CMD_FLAG_REQ_ONE)
        answers = [
            (context_id, metacontext.answer(context, self._device, offset, length, one))
            for context_id, context in self._contexts
        ]
        self._replies.block_status(cookie, answers)

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
        fua = bool(flags & p.CMD_FLAG_FUA)
        if length > reader.capacity:
            return self._write_in_pieces(offset, length, fua)
        start = reader.take(length, "in a write payload")
        data = reader.view[start : start + length]
        if fua:
            self._replies.flush()
        try:
            self._device.write(offset, data, fua)
        except Exception as exc:
            return self._failed("write", offset, length, exc)
        return 0

    def _write_in_pieces(self, offset: int, length: int, fua: bool) -> int:
        """Receive a large payload into the arena piece by piece, writing each piece."""
        replies = self._replies
        end = offset + length
        start = offset
        while start < end:
            view = replies.scratch(min(replies.arena_size, end - start))
            self._reader.readinto(view, "in a write payload")
            try:
                # One FUA write when it fits, else a flush after the last piece.
                self._device.write(start, view, fua and len(view) == length)
            except Exception as exc:
                self._reader.skip(end - start - len(view))
                return self._failed("write", start, len(view), exc)
            start += len(view)
        if fua and length > replies.arena_size:
            return self._call(self._flush)
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


def _hang_up(sock: socket.socket) -> None:
    """End a connection from another thread: its request loop then stops."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
