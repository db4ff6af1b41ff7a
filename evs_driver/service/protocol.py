"""The control protocol: one JSON object per line each way.

Request: ``{"method": NAME, "args": [...], "kwargs": {...}}``.
Reply: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"type", "message", "code"}}``.
A reply error is raised again on the client as the ``exception`` class of that name, so
``evs`` prints the same message whether it ran the operation itself or asked the service.
"""

import json
import os

from evs_driver import exception
from evs_driver.operations import OPERATIONS

MAX_LINE = 1024 * 1024  # a request is a few hundred bytes; anything this long is garbage
SOCKET_NAME = "evs-volume.sock"
LOCK_NAME = "evs-volume.lock"  # the service holds it alone; embedded commands share it
GATE_NAME = "evs-volume.starting"  # held by a starting service: new commands wait for it

# What a client may call: every operation of the table, and ``ping``.
PING = "ping"
METHODS = (*OPERATIONS, PING)


def state_path(conf) -> str:
    """The absolute state path of ``conf``."""
    return os.path.abspath(os.path.expanduser(conf.state_path))


def socket_path(conf) -> str:
    """Where the service of ``conf``'s state path takes control requests."""
    return os.path.join(state_path(conf), SOCKET_NAME)


def lock_path(conf) -> str:
    """The lock file held by the running service of ``conf``'s state path."""
    return os.path.join(state_path(conf), LOCK_NAME)


def gate_path(conf) -> str:
    """The lock file a service takes first, so that no new embedded command starts."""
    return os.path.join(state_path(conf), GATE_NAME)


def encode(message: dict) -> bytes:
    """One message as a line."""
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def request(method: str, args: tuple = (), kwargs: dict | None = None) -> bytes:
    """A request line."""
    return encode({"method": method, "args": list(args), "kwargs": kwargs or {}})


def parse_request(line: bytes) -> tuple[str, list, dict]:
    """(method, args, kwargs) of a request line; ``InvalidInput`` when it is not one."""
    if len(line) > MAX_LINE:
        raise exception.InvalidInput(reason=f"request longer than {MAX_LINE} bytes")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise exception.InvalidInput(reason=f"request is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise exception.InvalidInput(reason="request must be a JSON object")
    method = message.get("method")
    args = message.get("args", [])
    kwargs = message.get("kwargs", {})
    if method not in METHODS:
        raise exception.InvalidInput(reason=f"unknown method {str(method)[:64]!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise exception.InvalidInput(reason="args must be a list and kwargs an object")
    return method, args, kwargs


def ok(result) -> bytes:
    """A success reply line."""
    return encode({"ok": True, "result": result})


def error(exc: exception.EVSError) -> bytes:
    """An error reply line naming the error class."""
    return encode(
        {"ok": False, "error": {"type": type(exc).__name__, "message": exc.msg, "code": exc.code}}
    )


def parse_reply(line: bytes):
    """The result of a reply line, or raise the error it carries."""
    try:
        reply = json.loads(line)
        if reply["ok"]:
            return reply["result"]
        detail = reply["error"]
        name, message = detail["type"], detail["message"]
    except (ValueError, KeyError, TypeError) as exc:
        raise exception.EVSError(f"malformed reply from evs-volume: {exc}") from None
    cls = getattr(exception, name, None)
    if not (isinstance(cls, type) and issubclass(cls, exception.EVSError)):
        cls = exception.EVSError
    raise cls(message)
