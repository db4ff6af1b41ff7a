"""TLS for NBD over TCP: the server's X.509 credentials and the STARTTLS upgrade.

Credentials follow the directory layout of QEMU's ``tls-creds-x509`` object, so one
directory serves ``qemu-nbd --tls-creds`` and this server alike: ``ca-cert.pem`` (the CA
that signs client certificates), ``server-cert.pem`` and ``server-key.pem``.
"""

import os
import socket
import ssl
import stat
import time

from evs_driver import exception
from evs_driver.nbd.stream import TIMED_OUT

CA_CERT = "ca-cert.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"


def server_context(x509_dir: str, verify_peer: bool = True) -> ssl.SSLContext:
    """A TLS 1.2+ server context from ``x509_dir``; ``verify_peer`` requires client
    certificates signed by its ``ca-cert.pem``. Every problem names the file."""
    cert, key, ca = (os.path.join(x509_dir, name) for name in (SERVER_CERT, SERVER_KEY, CA_CERT))
    needed = (cert, key, ca) if verify_peer else (cert, key)
    for path in needed:
        if not os.path.isfile(path):
            raise exception.InvalidInput(reason=f"NBD TLS: {path} is missing")
    if os.stat(key).st_mode & stat.S_IROTH:
        raise exception.InvalidInput(
            reason=f"NBD TLS: the private key {key} is readable by every user; chmod o-r it"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # the NBD protocol's floor
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise exception.InvalidInput(
            reason=f"NBD TLS: cannot use {cert} with {key}: {_reason(exc)}"
        ) from exc
    if verify_peer:
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as exc:
            raise exception.InvalidInput(
                reason=f"NBD TLS: cannot use {ca}: {_reason(exc)}"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def wrap(sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
    """The server side of TLS on ``sock`` (which is detached); the handshake is not done yet."""
    return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)


def handshake(tls: ssl.SSLSocket, deadline: float | None) -> None:
    """Run the TLS handshake by ``deadline`` (``time.monotonic()``, None: no limit); failures
    end the session."""
    tls.settimeout(None if deadline is None else max(0.001, deadline - time.monotonic()))
    try:
        tls.do_handshake()
    except ssl.SSLError as exc:
        raise exception.NBDProtocolError(reason=f"TLS handshake failed: {_reason(exc)}") from None
    except TIMED_OUT:
        raise exception.NBDTimeout(reason="it did not finish the TLS handshake in time") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
