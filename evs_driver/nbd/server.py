"""The NBD server: listening sockets, one thread per connection, exports changed at run time.

A thread per connection (rather than asyncio) because every request ends in a blocking
device call; the GIL is released in the socket and file system calls, and a connection's
requests stay in order without any queue between threads.
"""

import logging
import os
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterable

from evs_driver import exception
from evs_driver.nbd import metacontext
from evs_driver.nbd.exports import Export, ExportRegistry, Opener
from evs_driver.nbd.handshake import Handshake
from evs_driver.nbd.limits import (
    RECEIVE_BUFFER,
    REFUSAL_TIMEOUT,
    REFUSING_AT_ONCE,
    Limits,
    Slots,
)
from evs_driver.nbd.protocol import MAX_OPTION_LENGTH
from evs_driver.nbd.session import BlockSizes
from evs_driver.nbd.stream import SocketReader, set_io_timeout
from evs_driver.nbd.transmission import Transmission

LOG = logging.getLogger(__name__)
HANDSHAKE_BUFFER = MAX_OPTION_LENGTH + 64  # the longest option with its header


class NBDServer:
    """Serves the exports of ``registry`` on the unix and TCP sockets it is told to listen on."""

    def __init__(
        self,
        registry: ExportRegistry | None = None,
        block_sizes: BlockSizes | None = None,
        limits: Limits | None = None,
        slots: Slots | None = None,
        namespaces: tuple[metacontext.Namespace, ...] = (metacontext.BASE,),
    ):
        """``slots`` counts connections against ``limits.max_connections``; pass one ``Slots``
        to several servers to cap them together. ``namespaces`` offer metadata contexts."""
        self.limits = limits or Limits()
        self.namespaces = namespaces
        self.registry = (
            registry
            if registry is not None
            else ExportRegistry(self.limits.max_connections_per_export)
        )
        self.block_sizes = block_sizes or BlockSizes()
        self.slots = slots or Slots(self.limits.max_connections)
        self._refusing = Slots(REFUSING_AT_ONCE)
        self._lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._connections: set[_Connection] = set()
        self._closed = False

    # -- exports -------------------------------------------------------------------------
    def add_export(
        self,
        name: str,
        opener: Opener,
        read_only: bool = False,
        aliases: Iterable[str] = (),
        description: str = "",
        namespaces: Iterable[metacontext.Namespace] = (),
    ) -> Export:
        """Offer an export from now on; ``opener()`` gives each connection its device;
        ``namespaces`` offer metadata contexts on it besides the server's."""
        return self.registry.add(name, opener, read_only, aliases, description, namespaces)

    def remove_export(self, name: str, timeout: float | None = 30.0) -> None:
        """Stop offering an export, end its connections and wait until their devices closed."""
        _export, connections = self.registry.remove(name)
        for connection in connections:
            connection.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        for connection in connections:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            connection.thread.join(remaining)
            if connection.thread.is_alive():
                LOG.warning("NBD connection %s to %s did not end in time", connection.peer, name)

    # -- listening -----------------------------------------------------------------------
    def listen_unix(self, path: str) -> str:
        """Listen on a unix socket at ``path`` (a stale socket there is replaced)."""
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        self._start_listener(_Listener(sock, f"unix:{path}", unix_path=path))
        return path

    def listen_tcp(
        self, host: str = "127.0.0.1", port: int = 0, tls_context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Listen on TCP (``port`` 0 picks a free one); return the bound (host, port).

        With ``tls_context`` every client must start TLS before anything else."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        bound = sock.getsockname()[:2]
        label = f"tcp:{bound[0]}:{bound[1]}"
        self._start_listener(_Listener(sock, label, tcp_address=bound, tls_context=tls_context))
        return bound

    def uri(self, name: str) -> str:
        """The NBD URI of an export on the first listener (``nbd+unix://`` or ``nbd://``)."""
        with self._lock:
            if not self._listeners:
                raise exception.InvalidOperation(reason="the NBD server is not listening")
            listener = self._listeners[0]
        return listener.uri(name)

    # -- lifetime ------------------------------------------------------------------------
    def close(self, timeout: float | None = 30.0) -> None:
        """Stop listening, end every connection and wait for their threads."""
        with self._lock:
            self._closed = True
            listeners, self._listeners = self._listeners, []
            connections = list(self._connections)
        for listener in listeners:
            listener.close()
        for connection in connections:
            connection.close()
        for thread in [listener.thread for listener in listeners] + [c.thread for c in connections]:
            thread.join(timeout)

    def connection_count(self) -> int:
        """Connections open right now, negotiating or transmitting."""
        with self._lock:
            return len(self._connections)

    def __enter__(self) -> "NBDServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _start_listener(self, listener: "_Listener") -> None:
        with self._lock:
            if self._closed:
                listener.close()
                raise exception.InvalidOperation(reason="the NBD server is closed")
            self._listeners.append(listener)
        listener.thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"nbd-accept-{listener.label}"
        )
        listener.thread.daemon = True
        listener.thread.start()

    def _accept_loop(self, listener: "_Listener") -> None:
        while True:
            try:
                sock, peer = listener.sock.accept()
            except OSError as exc:
                if listener.closing:
                    return
                # Out of descriptors and the like: wait instead of spinning.
                LOG.warning("NBD accept on %s failed: %s", listener.label, exc)
                time.sleep(0.1)
                continue
            if listener.tcp_address is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = self._admit(sock, peer or listener.label, listener.tls_context)
            if connection is None:
                continue
            with self._lock:
                if self._closed:
                    connection.abandon()
                    return
                self._connections.add(connection)
            connection.thread.start()

    def _admit(self, sock: socket.socket, peer, tls_context) -> "_Connection | None":
        """A connection for an accepted socket; over the cap, one that only says no."""
        if self.slots.take():
            return _Connection(self, sock, peer, self.slots, tls_context)
        reason = f"the NBD server has its maximum of {self.slots.maximum} connections"
        if self._refusing.take():
            LOG.warning("NBD client %s refused: %s", peer, reason)
            return _Connection(self, sock, peer, self._refusing, tls_context, refusal=reason)
        LOG.debug("NBD client %s closed at once: %s and refusals pending", peer, reason)
        sock.close()  # a flood: no thread, no buffer, no greeting
        return None

    def _forget(self, connection: "_Connection") -> None:
        with self._lock:
            self._connections.discard(connection)


class _Listener:
    """One listening socket and its accept thread."""

    def __init__(self, sock, label, unix_path=None, tcp_address=None, tls_context=None):
        self.sock = sock
        self.label = label
        self.unix_path = unix_path
        self.tcp_address = tcp_address
        self.tls_context = tls_context
        self.closing = False
        self.thread: threading.Thread | None = None

    def uri(self, name: str) -> str:
        quoted = urllib.parse.quote(name, safe="")
        if self.unix_path is not None:
            return f"nbd+unix:///{quoted}?socket={urllib.parse.quote(self.unix_path)}"
        host, port = self.tcp_address
        host = f"[{host}]" if ":" in host else host
        scheme = "nbds" if self.tls_context is not None else "nbd"
        return f"{scheme}://{host}:{port}/{quoted}"

    def close(self) -> None:
        self.closing = True
        try:
            # shutdown() wakes a thread blocked in accept(); close() alone does not.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except FileNotFoundError:
                pass


class _Connection:
    """One client: handshake, then transmission, in its own thread.

    It holds one of ``slots`` until it ends; with a ``refusal`` it only tells the client why
    it cannot be served (``Handshake`` answers every option with that error).
    """

    def __init__(self, server, sock, peer, slots: Slots, tls_context=None, refusal=None):
        self._server = server
        self._sock = sock
        self.peer = peer
        self._slots = slots
        self._tls_context = tls_context
        self._refusal = refusal
        self._export: Export | None = None
        self.thread = threading.Thread(target=self._serve, name=f"nbd-conn-{peer}")
        self.thread.daemon = True

    def abandon(self) -> None:
        """Drop a connection whose thread never started."""
        self._sock.close()
        self._slots.give_back()

    def close(self) -> None:
        """End the connection from another thread (its own thread cleans up)."""
        try:
            try:
                # The plain socket's shutdown, also under TLS: the TLS object is not thread-safe.
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except (AttributeError, TypeError):
                # eventlet's green socket (under Cinder) has no such method on its class; its
                # own delegates to the real socket, and its "threads" never run at once.
                self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _use_socket(self, sock: socket.socket) -> None:
        """STARTTLS replaced the socket (the old one is detached)."""
        self._sock = sock

    def _attach(self, export: Export) -> None:
        self._server.registry.attach(export, self)
        self._export = export

    def _serve(self) -> None:
        server = self._server
        limits = server.limits
        try:
            # Negotiation needs room for one option only; transmission gets the full buffer.
            reader = SocketReader(self._sock, HANDSHAKE_BUFFER)
            wait = REFUSAL_TIMEOUT if self._refusal else limits.handshake_timeout
            reader.deadline = time.monotonic() + wait
            session = Handshake(
                self._sock,
                reader,
                server.registry,
                server.block_sizes,
                self._attach,
                refusal=self._refusal,
                tls_context=self._tls_context,
                on_tls=self._use_socket,
                namespaces=server.namespaces,
            ).run()
            if session is None:
                return
            sock = self._sock
            try:
                reader.deadline = None
                reader.resize(RECEIVE_BUFFER)
                set_io_timeout(sock, limits.io_timeout)
                Transmission(
                    sock, reader, session, server.block_sizes.maximum, limits.max_bytes_in_flight
                ).run()
            finally:
                session.device.close()
        except exception.NBDDisconnected as exc:
            LOG.debug("NBD client %s: %s", self.peer, exc)
        except (exception.NBDProtocolError, exception.NBDTimeout, exception.NBDHangUp) as exc:
            LOG.warning("NBD client %s: %s", self.peer, exc)
        except OSError as exc:
            LOG.debug("NBD connection %s ended: %s", self.peer, exc)
        except Exception:
            LOG.exception("NBD connection %s failed", self.peer)
        finally:
            if self._export is not None:
                server.registry.detach(self._export, self)
            self._sock.close()
            self._slots.give_back()
            server._forget(self)
