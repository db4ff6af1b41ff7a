"""Test helpers: a hand-made NBD client speaking raw bytes, and a file-backed server setup.

Magic numbers are written out here rather than imported from the server, so a wrong
constant in the server cannot make its own tests agree with it.
"""

import os
import socket
import ssl
import struct
import time

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = 2**31 + 1, 2**31 + 2, 2**31 + 3
REP_ERR_TLS_REQD, REP_ERR_UNKNOWN, REP_ERR_TOO_BIG = 2**31 + 5, 2**31 + 6, 2**31 + 9
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 6
CMD_BLOCK_STATUS = 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_REQ_ONE = 1, 2, 8
REPLY_FLAG_DONE = 1
TYPE_NONE, TYPE_OFFSET_DATA, TYPE_BLOCK_STATUS = 0, 1, 5
TYPE_ERROR, TYPE_ERROR_OFFSET = 2**15 + 1, 2**15 + 2
STATE_HOLE, STATE_ZERO = 1, 2
EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 108
DISK_SIZE = 16 * 1024 * 1024


class Closed(Exception):
    """The server closed the connection."""


class WireClient:
    """One raw connection to the server under test."""

    def __init__(self, path: str | tuple[str, int], timeout: float = 10.0):
        """Connect to a unix socket ``path`` or a TCP ``(host, port)``."""
        family = socket.AF_INET if isinstance(path, tuple) else socket.AF_UNIX
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def starttls(self, context: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        """NBD_OPT_STARTTLS, then the client side of TLS on this connection."""
        self.option(OPT_STARTTLS)
        assert self.option_reply() == (OPT_STARTTLS, REP_ACK, b"")
        self.sock = context.wrap_socket(self.sock, server_hostname=host)

    def close(self) -> None:
        self.sock.close()

    def recv_exact(self, length: int) -> bytes:
        data = b""
        while len(data) < length:
            chunk = self.sock.recv(length - len(data))
            if not chunk:
                raise Closed(f"closed after {len(data)} of {length} bytes")
            data += chunk
        return data

    def is_closed(self) -> bool:
        """True when the server hung up (waits for it; any data instead is a failure)."""
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        if data:
            raise AssertionError(f"expected the server to hang up, got {data!r}")
        return True

    # -- handshake -----------------------------------------------------------------------
    def greeting(self, client_flags: int = 3) -> int:
        """Read the greeting, send client flags; return the handshake flags."""
        greeting = self.recv_exact(18)
        assert greeting[:16] == NBDMAGIC + IHAVEOPT
        self.sock.sendall(struct.pack(">I", client_flags))
        return struct.unpack(">H", greeting[16:])[0]

    def option(self, option: int, data: bytes = b"", magic: bytes = IHAVEOPT) -> None:
        self.sock.sendall(magic + struct.pack(">II", option, len(data)) + data)

    def option_reply(self) -> tuple[int, int, bytes]:
        magic, option, reply_type, length = struct.unpack(">QIII", self.recv_exact(20))
        assert magic == REPLY_MAGIC
        return option, reply_type, self.recv_exact(length)

    def info_request(self, option: int, name: str, infos=(3,)) -> list[tuple[int, bytes]]:
        """Send NBD_OPT_INFO/GO; return every reply (type, data) up to the final one."""
        encoded = name.encode()
        data = struct.pack(">I", len(encoded)) + encoded + struct.pack(">H", len(infos))
        data += b"".join(struct.pack(">H", i) for i in infos)
        self.option(option, data)
        return self.option_replies(option, REP_INFO)

    def option_replies(self, option: int, partial: int) -> list[tuple[int, bytes]]:
        """Every reply (type, data) to ``option`` up to the first that is not ``partial``."""
        replies = []
        while True:
            got_option, reply_type, payload = self.option_reply()
            assert got_option == option
            replies.append((reply_type, payload))
            if reply_type != partial:
                return replies

    def go(self, name: str, tls: ssl.SSLContext | None = None) -> tuple[int, int]:
        """Negotiate ``name`` (under TLS with ``tls``); return (size, transmission flags)."""
        self.greeting()
        if tls is not None:
            self.starttls(tls)
        replies = self.info_request(OPT_GO, name)
        assert replies[-1][0] == REP_ACK, replies
        for reply_type, payload in replies:
            if reply_type == REP_INFO and payload[:2] == b"\0\0":
                return struct.unpack(">QH", payload[2:])
        raise AssertionError(f"no NBD_INFO_EXPORT in {replies}")

    # -- transmission --------------------------------------------------------------------
    def request(
        self,
        command: int,
        offset: int = 0,
        length: int = 0,
        flags: int = 0,
        cookie: int = 1,
        payload: bytes = b"",
        magic: int = REQUEST_MAGIC,
    ) -> None:
        header = struct.pack(">IHHQQI", magic, flags, command, cookie, offset, length)
        self.sock.sendall(header + payload)

    def reply(self) -> tuple[int, int]:
        """Read a simple reply's header; return (error, cookie)."""
        magic, error, cookie = struct.unpack(">IIQ", self.recv_exact(16))
        assert magic == SIMPLE_REPLY_MAGIC
        return error, cookie

    def chunk(self) -> tuple[int, int, int, bytes]:
        """Read a structured reply chunk; return (flags, type, cookie, payload)."""
        magic, flags, kind, cookie, length = struct.unpack(">IHHQI", self.recv_exact(20))
        assert magic == STRUCTURED_REPLY_MAGIC, hex(magic)
        return flags, kind, cookie, self.recv_exact(length)

    def structured(self) -> None:
        """Negotiate structured replies (NBD_OPT_STRUCTURED_REPLY)."""
        self.option(OPT_STRUCTURED_REPLY)
        assert self.option_reply() == (OPT_STRUCTURED_REPLY, REP_ACK, b"")

    def meta_context(self, option: int, name: str, *queries: str) -> list[tuple[int, bytes]]:
        """LIST or SET_META_CONTEXT; return every reply (type, data) up to the final one."""
        encoded = name.encode()
        data = struct.pack(">I", len(encoded)) + encoded + struct.pack(">I", len(queries))
        for query in queries:
            data += struct.pack(">I", len(query.encode())) + query.encode()
        self.option(option, data)
        return self.option_replies(option, REP_META_CONTEXT)

    def read(self, offset: int, length: int, cookie: int = 1) -> bytes:
        self.request(CMD_READ, offset, length, cookie=cookie)
        assert self.reply() == (0, cookie)
        return self.recv_exact(length)

    def write(self, offset: int, data: bytes, flags: int = 0, cookie: int = 1) -> int:
        """Write; return the error of the reply."""
        self.request(CMD_WRITE, offset, len(data), flags, cookie, data)
        error, got = self.reply()
        assert got == cookie
        return error


def make_disk(directory: str, size: int = DISK_SIZE, name: str = "disk.raw") -> str:
    """A sparse raw file of ``size`` bytes."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def wait_for(condition, what: str) -> None:
    """Poll until ``condition()``; the deadline only bounds a hang, it measures nothing."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
