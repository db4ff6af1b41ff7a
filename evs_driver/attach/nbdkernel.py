"""The kernel's NBD client, driven over generic netlink: a ``/dev/nbdN`` per attached volume.

The service negotiates with its own NBD export (a unix socket), then hands the socket to
the kernel (``NBD_CMD_CONNECT``). A request the server does not answer within the I/O
timeout is retried on a reconnected socket; the device waits up to the dead-connection
timeout for one (``NBD_CMD_RECONFIGURE``, what a restarted service sends), then fails the
I/O. Nothing hangs forever. Each device carries ``evs:<export>`` as its backend
identifier (``/sys/block/nbdN/backend``), so a restarted service finds its own.
"""

import errno
import os
import socket
import struct
import time

from evs_driver import exception
from evs_driver.attach import netlink
from evs_driver.nbd import protocol as p

# include/uapi/linux/nbd-netlink.h
CMD_CONNECT = 1
CMD_DISCONNECT = 2
CMD_RECONFIGURE = 3
CMD_STATUS = 5
ATTR_INDEX = 1
ATTR_SIZE_BYTES = 2
ATTR_BLOCK_SIZE_BYTES = 3
ATTR_TIMEOUT = 4
ATTR_SERVER_FLAGS = 5
ATTR_CLIENT_FLAGS = 6
ATTR_SOCKETS = 7
ATTR_DEAD_CONN_TIMEOUT = 8
ATTR_DEVICE_LIST = 9
ATTR_BACKEND_IDENTIFIER = 10
DEVICE_ITEM = 1
DEVICE_INDEX = 1
DEVICE_CONNECTED = 2
SOCK_ITEM = 1
SOCK_FD = 1

IDENTIFIER_PREFIX = "evs:"
HANDSHAKE_TIMEOUT = 30.0
RECONNECT_WAIT = 10.0  # seconds to wait for the kernel to notice a dead connection


def negotiate(sock: socket.socket, export_name: str) -> tuple[int, int]:
    """Fixed-newstyle handshake with NBD_OPT_GO; returns (size, transmission flags)."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    magic, opt_magic, flags = p.SERVER_GREETING.unpack(_recv(sock, p.SERVER_GREETING.size))
    if magic != p.NBDMAGIC or opt_magic != p.IHAVEOPT or not flags & p.FLAG_FIXED_NEWSTYLE:
        raise exception.NBDProtocolError(reason="the server is not a fixed-newstyle NBD server")
    client = p.FLAG_C_FIXED_NEWSTYLE | (flags & p.FLAG_NO_ZEROES and p.FLAG_C_NO_ZEROES)
    name = export_name.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    sock.sendall(
        p.CLIENT_FLAGS.pack(client) + p.OPTION_HEADER.pack(p.IHAVEOPT, p.OPT_GO, len(data)) + data
    )
    size = tflags = None
    while True:
        _magic, _option, reply, length = p.OPTION_REPLY.unpack(_recv(sock, p.OPTION_REPLY.size))
        body = _recv(sock, length)
        if reply == p.REP_ACK:
            break
        if reply == p.REP_INFO and len(body) >= p.INFO_EXPORT_DATA.size:
            info, found_size, found_flags = p.INFO_EXPORT_DATA.unpack_from(body)
            if info == p.INFO_EXPORT:
                size, tflags = found_size, found_flags
        elif reply & 0x80000000:
            raise exception.NBDProtocolError(
                reason=f"the server refused export {export_name}: {body.decode(errors='replace')}"
            )
    if size is None:
        raise exception.NBDProtocolError(reason="the server sent no export size")
    sock.settimeout(None)
    return size, tflags


def _recv(sock: socket.socket, length: int) -> bytes:
    chunks, left = [], length
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise exception.NBDDisconnected(where="during the handshake")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class KernelNBD:
    """Connects, reconnects and disconnects ``/dev/nbdN`` devices (root only)."""

    def __init__(self, io_timeout: int, dead_connection_timeout: int, max_devices: int):
        self.io_timeout = io_timeout
        self.dead_connection_timeout = dead_connection_timeout
        self.max_devices = max_devices

    def _netlink(self) -> netlink.GenericNetlink:
        try:
            return netlink.GenericNetlink("nbd")
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise exception.TargetModuleMissing(
                    what="a block device for the volume", module="nbd"
                ) from None
            raise exception.AttachFailed(reason=f"kernel NBD netlink: {exc.strerror}") from exc

    def check(self) -> None:
        """Raise ``TargetModuleMissing`` unless the kernel NBD client is there."""
        self._netlink().close()

    def connected(self) -> dict[int, bool]:
        """Every NBD device the kernel has, by index: whether it is connected."""
        with self._netlink() as nl:
            replies = nl.call(CMD_STATUS)
        found = {}
        for reply in replies:
            for devices in reply.get(ATTR_DEVICE_LIST, []):
                for item in netlink.parse(devices).get(DEVICE_ITEM, []):
                    fields = netlink.parse(item)
                    (index,) = struct.unpack("=I", fields[DEVICE_INDEX][0])
                    found[index] = bool(fields.get(DEVICE_CONNECTED, [b"\0"])[0][0])
        return found

    def find(self, export_name: str) -> tuple[int, bool] | None:
        """(index, connected) of the device we connected to ``export_name``, None if none."""
        for index, connected in sorted(self.connected().items()):
            if self.identifier(index) == export_name:
                return index, connected
        return None

    def connect(self, socket_path: str, export_name: str) -> int:
        """Connect a free ``/dev/nbdN`` (N < max_devices) to ``export_name``; return N."""
        busy = self.connected()
        for index in range(self.max_devices):
            if busy.get(index):
                continue
            sock = self._open(socket_path)
            try:
                size, flags = negotiate(sock, export_name)
                with self._netlink() as nl:
                    nl.call(
                        CMD_CONNECT,
                        netlink.u32(ATTR_INDEX, index),
                        netlink.u64(ATTR_SIZE_BYTES, size),
                        netlink.u64(ATTR_BLOCK_SIZE_BYTES, 512),
                        netlink.u64(ATTR_SERVER_FLAGS, flags),
                        netlink.u64(ATTR_CLIENT_FLAGS, 0),  # the device outlives the socket
                        *self._timeouts(),
                        netlink.string(ATTR_BACKEND_IDENTIFIER, IDENTIFIER_PREFIX + export_name),
                        _sockets(sock),
                    )
                return index
            except OSError as exc:
                if exc.errno != errno.EBUSY:  # taken by someone else since the status
                    raise exception.AttachFailed(
                        reason=f"connecting /dev/nbd{index}: {exc.strerror}"
                    ) from exc
            finally:
                sock.close()  # the kernel holds its own reference
        raise exception.NoFreeDevice(limit=self.max_devices)

    def reconnect(self, index: int, socket_path: str, export_name: str) -> None:
        """Give ``/dev/nbd<index>`` a new connection (its old one died with a service)."""
        deadline = time.monotonic() + RECONNECT_WAIT
        while True:
            sock = self._open(socket_path)
            try:
                negotiate(sock, export_name)
                with self._netlink() as nl:
                    nl.call(
                        CMD_RECONFIGURE,
                        netlink.u32(ATTR_INDEX, index),
                        *self._timeouts(),
                        # the kernel checks it is the same backend it was connected to
                        netlink.string(ATTR_BACKEND_IDENTIFIER, IDENTIFIER_PREFIX + export_name),
                        _sockets(sock),
                    )
                return
            except OSError as exc:
                # ENOSPC: the kernel has not marked the old connection dead yet.
                if exc.errno != errno.ENOSPC or time.monotonic() > deadline:
                    raise exception.AttachFailed(
                        reason=f"reconnecting /dev/nbd{index}: {exc.strerror}"
                    ) from exc
            finally:
                sock.close()
            time.sleep(0.2)

    def disconnect(self, index: int) -> None:
        """Disconnect ``/dev/nbd<index>``; one already disconnected is fine."""
        try:
            with self._netlink() as nl:
                nl.call(CMD_DISCONNECT, netlink.u32(ATTR_INDEX, index))
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENODEV, errno.ENOENT):
                raise exception.AttachFailed(
                    reason=f"disconnecting /dev/nbd{index}: {exc.strerror}"
                ) from exc

    @staticmethod
    def identifier(index: int) -> str | None:
        """The export a device was connected to by us, None when it is not ours (or free)."""
        try:
            with open(f"/sys/block/nbd{index}/backend") as f:
                found = f.read().strip()
        except OSError:
            return None
        return found[len(IDENTIFIER_PREFIX) :] if found.startswith(IDENTIFIER_PREFIX) else None

    def _timeouts(self) -> tuple[bytes, bytes]:
        return (
            netlink.u64(ATTR_TIMEOUT, self.io_timeout),
            netlink.u64(ATTR_DEAD_CONN_TIMEOUT, self.dead_connection_timeout),
        )

    @staticmethod
    def _open(socket_path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
        except OSError as exc:
            sock.close()
            raise exception.AttachFailed(
                reason=f"cannot reach the NBD export at {socket_path}: {exc.strerror}"
            ) from exc
        return sock


def device_path(index: int) -> str:
    """The device node of NBD device ``index``."""
    return f"/dev/nbd{index}"


def _sockets(sock: socket.socket) -> bytes:
    return netlink.nested(
        ATTR_SOCKETS, netlink.nested(SOCK_ITEM, netlink.u32(SOCK_FD, sock.fileno()))
    )


def wait_for_node(index: int) -> None:
    """Raise unless the device node exists (devtmpfs makes it when the disk is added)."""
    if not os.path.exists(device_path(index)):
        raise exception.AttachFailed(reason=f"{device_path(index)} did not appear")
