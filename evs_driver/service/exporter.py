"""``NBDExporter``: the ``Exporter`` the service's drivers attach through.

Each listening endpoint (a unix socket or a TCP address) has its own ``NBDServer``, so an
export is reachable only where it was asked for: serving one volume on a public address
does not expose the others. An endpoint's server starts with its first export and stops
with its last. Exports are named by device id, and by the device's name when its caller
gives one (the manager does when that name is no other device's).
"""

import dataclasses
import ipaddress
import os
import socket
import ssl
import stat
import threading

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import exception
from evs_driver.conf import option_error, read_group
from evs_driver.conf.nbd import NBD_GROUP, NBD_OPTS, register_nbd_opts
from evs_driver.interface import Exporter
from evs_driver.nbd import Limits, NBDServer, Slots, changes, tls

LOG = logging.getLogger(__name__)
DEFAULT_PORT = 10809  # IANA's NBD port
LOCALHOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where an NBD server listens: ``socket`` (a unix path) or ``host`` and ``port``."""

    socket: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, listen: dict | None, default_socket: str | None) -> "Endpoint":
        """An endpoint from a request's ``listen`` dict (None: the default socket)."""
        if not listen:
            return cls(socket=default_socket)
        if not isinstance(listen, dict) or set(listen) - {"socket", "host", "port"}:
            raise exception.InvalidInput(reason=f"bad NBD listen address {listen!r}")
        if listen.get("socket") is not None:
            if listen.get("host") is not None or listen.get("port") is not None:
                raise exception.InvalidInput(reason="give a socket or a TCP address, not both")
            path = listen["socket"]
            if not isinstance(path, str) or not os.path.isabs(path):
                raise exception.InvalidInput(reason=f"NBD socket {path!r} is not an absolute path")
            return cls(socket=path)
        host = listen.get("host") or LOCALHOST
        port = listen.get("port")
        port = DEFAULT_PORT if port is None else port
        if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise exception.InvalidInput(reason=f"bad NBD TCP address {host!r} port {port!r}")
        return cls(host=host, port=port)

    def describe(self) -> str:
        """For messages."""
        return f"unix socket {self.socket}" if self.socket else f"{self.host}:{self.port}"


@dataclasses.dataclass
class _Served:
    endpoint: Endpoint
    server: NBDServer
    read_only: bool
    info: dict


class NBDExporter(Exporter):
    """Serves backend devices over NBD; thread-safe.

    Every endpoint's server shares one count of connections, so ``limits.max_connections``
    caps the whole exporter.
    """

    def __init__(
        self,
        default_socket: str | None,
        limits: Limits | None = None,
        tls_context: ssl.SSLContext | None = None,
        allow_insecure_tcp: bool = False,
    ):
        """With ``tls_context`` every TCP endpoint requires TLS; without it, endpoints off
        loopback are refused unless ``allow_insecure_tcp``."""
        self.default_socket = default_socket
        self.limits = limits or Limits()
        self.tls_context = tls_context
        self.allow_insecure_tcp = allow_insecure_tcp
        self._slots = Slots(self.limits.max_connections)
        self._lock = threading.Lock()
        self._servers: dict[Endpoint, NBDServer] = {}
        self._served: dict[str, _Served] = {}
        self._closed = False
        self._bases = None  # offer_changes: snapshots an export may be compared with

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts, default_socket: str | None) -> "NBDExporter":
        """An exporter with the ``[nbd]`` options of ``conf`` (registered here)."""
        register_nbd_opts(conf)
        values = read_group(conf, NBD_GROUP, NBD_OPTS)
        x509_dir = values.pop("tls_x509_dir")
        verify_peer = values.pop("tls_verify_peer")
        allow_insecure_tcp = values.pop("allow_insecure_tcp")
        values["io_timeout"] = values["io_timeout"] or None  # 0: no limit
        context = None
        if x509_dir:
            try:
                context = tls.server_context(os.path.expanduser(x509_dir), verify_peer)
            except exception.InvalidInput as exc:
                raise option_error(conf, NBD_GROUP, "tls_x509_dir", exc.kwargs["reason"]) from exc
        return cls(default_socket, Limits(**values), context, allow_insecure_tcp)

    def export(
        self,
        backend,
        device_id: str,
        read_only: bool,
        listen: dict | None = None,
        name: str | None = None,
    ) -> dict:
        """Serve ``device_id`` (and under ``name`` too); asking again for the same export
        returns the same info."""
        if not listen and self.default_socket is None:
            # The embedded exporter serves only on the private sockets its copies ask for.
            raise exception.AttachNeedsService(name=device_id)
        endpoint = Endpoint.parse(listen, self.default_socket)
        with self._lock:
            if self._closed:
                raise exception.InvalidOperation(reason="the NBD exporter is shut down")
            served = self._served.get(device_id)
            if served is not None:
                if served.read_only == read_only and (not listen or endpoint == served.endpoint):
                    return dict(served.info)
                raise exception.AlreadyExists(
                    kind="NBD export", name=f"{device_id} ({served.info['uri']})"
                )
            server, endpoint = self._server(endpoint)
            try:
                server.add_export(
                    device_id,
                    lambda: backend.open_device(device_id, writable=not read_only),
                    read_only=read_only,
                    aliases=[name] if name else (),
                    description=name or "",
                    namespaces=self._namespaces(backend, device_id),
                )
            except BaseException:
                self._stop_if_idle(endpoint)
                raise
            info = {
                "export_name": device_id,
                "name": name or None,
                "uri": server.uri(device_id),
                "read_only": read_only,
            }
            if endpoint.socket:
                info["socket"] = endpoint.socket
            else:
                info.update(
                    host=endpoint.host, port=endpoint.port, tls=self.tls_context is not None
                )
            self._served[device_id] = _Served(endpoint, server, read_only, info)
        LOG.info("Serving %s at %s", device_id, info["uri"])
        return dict(info)

    def offer_changes(self, bases) -> None:
        """Offer ``evs:changed-since:S`` on exports made from now on, where the backend
        can diff; ``bases(device_id)`` lists the candidates for S."""
        self._bases = bases

    def _namespaces(self, backend, device_id: str) -> tuple:
        bases = self._bases
        if bases is None or not backend.supports_diffs:
            return ()
        return (changes.ChangedSinceNamespace(lambda: bases(device_id)),)

    def _server(self, endpoint: Endpoint) -> tuple[NBDServer, Endpoint]:
        """The running server of ``endpoint``, started when there is none (lock held)."""
        if endpoint in self._servers:
            return self._servers[endpoint], endpoint
        server = NBDServer(limits=self.limits, slots=self._slots)
        try:
            if endpoint.socket:
                _refuse_live_socket(endpoint.socket)
                server.listen_unix(endpoint.socket)
                os.chmod(endpoint.socket, 0o600)  # owner only, like the control socket
            else:
                self._check_security(endpoint)
                host, port = server.listen_tcp(endpoint.host, endpoint.port, self.tls_context)
                endpoint = Endpoint(host=host, port=port)  # port 0 became a real one
        except OSError as exc:
            server.close()
            raise exception.InvalidInput(
                reason=f"cannot serve NBD on {endpoint.describe()}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            server.close()
            raise
        self._servers[endpoint] = server
        return server, endpoint

    def _check_security(self, endpoint: Endpoint) -> None:
        """Refuse plain NBD where the network can reach it, unless the operator allowed it."""
        if self.tls_context is not None or self.allow_insecure_tcp:
            return
        if not _is_loopback(endpoint.host):
            raise exception.InvalidInput(
                reason=f"NBD on {endpoint.describe()} without TLS would let anyone on the "
                "network read and write the volume: set [nbd] tls_x509_dir to serve with TLS, "
                "or [nbd] allow_insecure_tcp = true to serve unencrypted anyway"
            )

    def _stop_if_idle(self, endpoint: Endpoint) -> None:
        server = self._servers.get(endpoint)
        if server is not None and not server.registry.exports():
            del self._servers[endpoint]
            server.close()

    def unexport(self, device_id: str) -> None:
        """Stop serving ``device_id``: its clients are disconnected and its devices closed."""
        with self._lock:
            served = self._served.pop(device_id, None)
            if served is None:
                return
            served.server.remove_export(device_id)
            self._stop_if_idle(served.endpoint)
        LOG.info("Stopped serving %s", device_id)

    def served(self, device_id: str) -> dict | None:
        """The connection info of ``device_id``'s export with its live connection count,
        None when it is not served."""
        with self._lock:
            served = self._served.get(device_id)
            if served is None:
                return None
            return dict(served.info, connections=served.server.registry.connection_count(device_id))

    def exports(self) -> list[dict]:
        """Connection info of every export, with its live connection count."""
        with self._lock:
            return [
                dict(s.info, connections=s.server.registry.connection_count(device_id))
                for device_id, s in sorted(self._served.items())
            ]

    def close(self) -> None:
        """Stop every server; their devices are closed before this returns."""
        with self._lock:
            self._closed = True
            servers = list(self._servers.values())
            self._servers.clear()
            self._served.clear()
        for server in servers:
            server.close()


def _is_loopback(host: str) -> bool:
    """True when every address ``host`` stands for is a loopback one."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except socket.gaierror:
        return False  # binding fails with its own error; no reason to call it safe
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _refuse_live_socket(path: str) -> None:
    """Refuse a path where something answers (the NBD server replaces only dead sockets)."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return  # binding fails with a clear error of its own
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError:
        return  # left by a process that died: safe to replace
    finally:
        probe.close()
    raise exception.InvalidInput(reason=f"cannot serve NBD on {path}: another server listens there")
