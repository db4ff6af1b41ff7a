"""Argument types shared by the operations: sizes, counts, intervals, ports, KEY=VALUE, listen
addresses."""

import argparse
import os

from evs_driver import exception, scheduling
from evs_driver.operations.table import Arg


def _decimal(text: str) -> int | None:
    """A plain decimal integer (no sign, no ``_``, no spaces), or None."""
    return int(text) if text.isascii() and text.isdigit() else None


def gib(text: str) -> int:
    """A size argument: a whole number of GiB. A minus sign is read, so that ``-1`` is told
    it must be at least 1 GiB (range checks are the manager's)."""
    negative = text.startswith("-")
    value = _decimal(text[1:] if negative else text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of GiB (digits only)")
    return -value if negative else value


def count(text: str) -> int:
    """A whole number, 0 or more (range checks are the manager's)."""
    value = _decimal(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (digits only)")
    return value


def interval(text: str) -> int:
    """A schedule's interval (``30m``, ``1h``, ``1d``, ``1w``) in seconds."""
    try:
        return scheduling.parse_every(text)
    except exception.InvalidSchedule as exc:
        raise argparse.ArgumentTypeError(exc.kwargs["reason"]) from None


def port(text: str) -> int:
    """A TCP port, 0 to 65535."""
    value = _decimal(text)
    if value is None or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return value


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (metadata properties)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


PROPERTIES = Arg(
    "metadata",
    ("--property",),
    help="Metadata (repeatable).",
    type=key_value,
    action="append",
    default=[],
    metavar="KEY=VALUE",
    convert=dict,
)

LISTEN = (
    Arg(
        "socket",
        ("--socket",),
        help="Serve on this unix socket (default: the service's own).",
        metavar="PATH",
        group="where",
        cli_only=True,
    ),
    Arg(
        "bind",
        ("--bind",),
        help="Serve on TCP at this address.",
        metavar="ADDR",
        group="where",
        cli_only=True,
    ),
    Arg(
        "port",
        ("--port",),
        type=port,
        cli_only=True,
        help="TCP port (default 10809, NBD's; 0 picks a free one); implies TCP.",
    ),
)


def fold_listen(values: dict) -> dict:
    """``--socket`` or ``--bind``/``--port`` as the ``listen`` argument (None: the default)."""
    socket, bind, tcp_port = values.pop("socket"), values.pop("bind"), values.pop("port")
    if socket:
        if tcp_port is not None:
            raise exception.InvalidInput(reason="give --socket or a TCP --bind/--port, not both")
        values["listen"] = {"socket": os.path.abspath(socket)}
    elif bind or tcp_port is not None:
        # The exporter fills in what is missing: 127.0.0.1, and NBD's port.
        values["listen"] = {"host": bind, "port": tcp_port}
    else:
        values["listen"] = None
    return values


def image_format() -> Arg:
    """``-O FMT``: the format an export writes."""
    return Arg(
        "image_format",
        ("-O", "--image-format"),
        default="raw",
        metavar="FMT",
        help="Image format to write (raw, qcow2, vmdk... any qemu-img writes; default raw).",
    )
