"""The control socket: a unix socket (mode 0600) taking JSON-line requests, a thread each.

A connection is a ``Session``: work it registers with ``on_close`` (an export that lives
as long as the asking ``evs`` process, e.g. during an import) is undone when it ends,
however it ends. A malformed request gets an error reply; only an overlong line or a
broken socket ends the connection.
"""

import contextlib
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable

from oslo_log import log as logging

from evs_driver import exception
from evs_driver.operations.context import Session
from evs_driver.service import protocol

LOG = logging.getLogger(__name__)
_UCRED = struct.Struct("3i")  # pid, uid, gid of SO_PEERCRED

Handler = Callable[[str, list, dict, Session], object]


class ControlServer:
    """Accepts control connections on ``path`` and answers them with ``handler``."""

    def __init__(self, path: str, handler: Handler):
        self.path = path
        self._handler = handler
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closing = False

    def listen(self) -> None:
        """Bind the socket owner-only, then start accepting."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # left by a killed service: nobody answers on it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)  # before listen(): no one else ever connects
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise exception.InvalidInput(
                reason=f"cannot listen on {self.path}: {exc.strerror or exc}"
            ) from exc
        self._sock = sock
        thread = threading.Thread(target=self._accept, name="evs-control-accept", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closing:
                    return
                continue
            pid, uid, _gid = _UCRED.unpack(
                conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
            if uid not in (os.getuid(), 0):  # the socket mode should already stop them
                LOG.warning("Refused a control connection from uid %d", uid)
                conn.close()
                continue
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self._connections.add(conn)
                thread = threading.Thread(
                    target=self._serve, args=(conn, pid), name=f"evs-control-{pid}", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket, pid: int) -> None:
        session = Session(pid)
        try:
            reader = conn.makefile("rb")
            while True:
                line = reader.readline(protocol.MAX_LINE + 1)
                if not line:
                    return
                conn.sendall(self._answer(line, session))
                if len(line) > protocol.MAX_LINE:
                    return  # the rest of that line cannot be told from a next request
        except OSError as exc:
            LOG.debug("Control connection of pid %d ended: %s", pid, exc)
        finally:
            session.close()
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _answer(self, line: bytes, session: Session) -> bytes:
        try:
            method, args, kwargs = protocol.parse_request(line)
            return protocol.ok(self._handler(method, args, kwargs, session))
        except exception.EVSError as exc:
            return protocol.error(exc)
        except Exception as exc:  # a bug must not take the service down: report it
            LOG.exception("Control request failed")
            return protocol.error(
                exception.EVSError(f"evs-volume failed: unexpected {type(exc).__name__}: {exc}")
            )

    def close(self) -> None:
        """Stop accepting, end every connection (running their clean-ups) and wait."""
        with self._lock:
            self._closing = True
            connections = list(self._connections)
            threads = list(self._threads)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(30)
