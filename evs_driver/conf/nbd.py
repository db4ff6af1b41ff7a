"""Options of the ``[nbd]`` group: what the service's NBD servers may spend, and TLS."""

from oslo_config import cfg

from evs_driver.nbd.limits import MIN_IN_FLIGHT, RECEIVE_BUFFER, Limits

NBD_GROUP = "nbd"
_DEFAULTS = Limits()

NBD_OPTS = [
    cfg.IntOpt(
        "max_connections",
        default=_DEFAULTS.max_connections,
        min=1,
        help="NBD connections the service holds open at once, over all its listening "
        "addresses, negotiating or transmitting. A client over the cap is refused with an "
        "NBD error saying so.",
    ),
    cfg.IntOpt(
        "max_connections_per_export",
        default=_DEFAULTS.max_connections_per_export,
        min=1,
        help="Connections one export (volume or snapshot) may have at once; a client over "
        "the cap is refused with an NBD error.",
    ),
    cfg.IntOpt(
        "max_bytes_in_flight",
        default=_DEFAULTS.max_bytes_in_flight,
        min=MIN_IN_FLIGHT,
        help="Bytes of read data one connection may have waiting for its client; larger "
        "reads and writes are streamed through this buffer in pieces, and while replies "
        "wait no further request is read. The NBD buffers of the service stay below about "
        f"max_connections x (this + {RECEIVE_BUFFER // 1024} KiB).",
    ),
    cfg.FloatOpt(
        "handshake_timeout",
        default=_DEFAULTS.handshake_timeout,
        min=0.001,
        help="Seconds a client has to finish NBD negotiation (choose an export) after "
        "connecting; then it is dropped.",
    ),
    cfg.FloatOpt(
        "io_timeout",
        default=_DEFAULTS.io_timeout,
        min=0,
        help="Seconds a connection may stall in the middle of a request (a request or its "
        "payload half sent, or replies it does not read) before it is dropped; a client "
        "idle between requests is never dropped. 0: wait forever.",
    ),
    cfg.StrOpt(
        "tls_x509_dir",
        help="Directory of X.509 credentials in the layout of QEMU's tls-creds-x509 object: "
        "ca-cert.pem, server-cert.pem and server-key.pem. When set, every NBD export on TCP "
        "requires TLS (NBD_OPT_STARTTLS; clients use nbds:// URIs or --tls-creds).",
    ),
    cfg.BoolOpt(
        "tls_verify_peer",
        default=True,
        help="With TLS, require a client certificate signed by the directory's ca-cert.pem; "
        "off, any client that can reach the address may connect.",
    ),
    cfg.BoolOpt(
        "allow_insecure_tcp",
        default=False,
        help="Allow serving NBD without TLS on a TCP address other than loopback, where anyone "
        "on the network can read and write the volume. Off, such a serve is refused; "
        "set tls_x509_dir instead.",
    ),
]


def register_nbd_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[nbd]`` options on ``conf`` (idempotent)."""
    conf.register_opts(NBD_OPTS, group=NBD_GROUP)
