"""A minimal generic-netlink client: resolve a family, send one command, read its replies.

Only what the kernel NBD family needs: u8/u32/u64/string attributes, nested attributes,
one request at a time with an acknowledgement, errors raised as ``OSError`` with the
kernel's errno.
"""

import errno
import os
import socket
import struct

NETLINK_GENERIC = 16
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_F_NESTED = 0x8000
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_GENLMSGHDR = struct.Struct("=BBH")  # command, version, reserved
_NLATTR = struct.Struct("=HH")  # length, type


def _align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to four bytes."""
    body = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return body + b"\0" * (_align(len(body)) - len(body))


def u8(kind: int, value: int) -> bytes:
    """An unsigned 8-bit attribute."""
    return attr(kind, struct.pack("=B", value))


def u32(kind: int, value: int) -> bytes:
    """An unsigned 32-bit attribute."""
    return attr(kind, struct.pack("=I", value))


def u64(kind: int, value: int) -> bytes:
    """An unsigned 64-bit attribute."""
    return attr(kind, struct.pack("=Q", value))


def string(kind: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, value.encode() + b"\0")


def nested(kind: int, *children: bytes) -> bytes:
    """An attribute holding other attributes."""
    return attr(kind | NLA_F_NESTED, b"".join(children))


def parse(data: bytes) -> dict[int, list[bytes]]:
    """Attributes of ``data`` by type (nested flag dropped); a type may repeat."""
    found: dict[int, list[bytes]] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            break
        found.setdefault(kind & ~NLA_F_NESTED, []).append(
            data[offset + _NLATTR.size : offset + length]
        )
        offset += _align(length)
    return found


class GenericNetlink:
    """One generic-netlink socket bound to one family (e.g. ``"nbd"``)."""

    def __init__(self, family: str):
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self._seq = 0
        try:
            self._sock.bind((0, 0))
            replies = self._request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, string(2, family))
        except BaseException:
            self._sock.close()
            raise
        ids = [parse(body).get(CTRL_ATTR_FAMILY_ID) for body in replies]
        ids = [found[0] for found in ids if found]
        if not ids:
            self._sock.close()
            raise OSError(errno.ENOENT, f"no generic netlink family {family!r}")
        (self.family_id,) = struct.unpack_from("=H", ids[0])

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> "GenericNetlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, command: int, *attrs: bytes, version: int = 1) -> list[dict[int, list[bytes]]]:
        """Send ``command`` with ``attrs``; return the attributes of each reply message."""
        return [parse(body) for body in self._request(self.family_id, command, version, *attrs)]

    def _request(self, family: int, command: int, version: int, *attrs: bytes) -> list[bytes]:
        self._seq += 1
        payload = _GENLMSGHDR.pack(command, version, 0) + b"".join(attrs)
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(payload), family, NLM_F_REQUEST | NLM_F_ACK, self._seq, 0
        )
        self._sock.sendall(header + payload)
        replies = []
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
                body = data[offset + _NLMSGHDR.size : offset + length]
                offset += _align(length)
                if seq != self._seq:
                    continue  # a stale reply to an earlier request
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return replies  # the acknowledgement ends the exchange
                if kind == NLMSG_DONE:
                    return replies
                replies.append(body[_GENLMSGHDR.size :])
