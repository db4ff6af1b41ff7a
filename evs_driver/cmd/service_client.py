"""The ``evs`` side of the control socket: a client of the running ``evs-volume``.

It needs neither oslo.config nor the manager, so a command that talks to a running
service imports only this, the protocol and the operations table.
"""

import socket

from evs_driver import exception, operations
from evs_driver.service import protocol


class Operations:
    """``client.volume_create(...)``: an operation by name, with its ``evs``-side part."""

    embedded = False
    progress = None

    def __getattr__(self, name: str):
        op = operations.find(name)
        if op is None:
            raise AttributeError(name)
        return lambda *args, **kwargs: perform(self, op, args, kwargs)


def perform(client, op: operations.Operation, args=(), kwargs=None):
    """Run ``op`` for the user: its ``evs``-side part if it has one, else the call."""
    kwargs = kwargs or {}
    if op.client is not None:
        return op.client(client, *args, **kwargs)
    return client.call(op.name, *args, **kwargs)


class ServiceClient(Operations):
    """Sends each operation to the running ``evs-volume`` service over its control socket."""

    def __init__(self, sock: socket.socket, path: str):
        self._sock = sock
        self._reader = sock.makefile("rb")
        self.path = path

    @classmethod
    def connect(cls, path: str) -> "ServiceClient | None":
        """A client of the service on ``path``, None when nothing answers there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise exception.ServiceUnavailable(path=path, reason=exc.strerror or str(exc)) from exc
        client = cls(sock, path)
        try:
            client.call(protocol.PING)
        except exception.ServiceUnavailable:
            client.close()
            return None
        return client

    def close(self) -> None:
        """Hang up: exports this connection made for a copy end with it."""
        self._reader.close()
        self._sock.close()

    def call(self, method: str, /, *args, **kwargs):
        """One request and its reply; the service's error is raised here."""
        try:
            self._sock.sendall(protocol.request(method, args, kwargs))
            line = self._reader.readline()
        except OSError as exc:
            raise exception.ServiceUnavailable(path=self.path, reason=str(exc)) from exc
        if not line:
            raise exception.ServiceUnavailable(path=self.path, reason="it closed the connection")
        return protocol.parse_reply(line)
