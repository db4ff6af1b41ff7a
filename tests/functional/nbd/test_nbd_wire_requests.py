"""Transmission over a raw socket: every command, pipelining, and every malformed request.

Each bad request must get the exact NBD error (or a closed connection where the protocol
leaves no other choice), change no data, and leave the server serving other clients.
"""

import errno
import os
import select
import threading

import pytest

from evs_driver import exception
from evs_driver.filedev import FileDevice
from evs_driver.nbd import Limits, NBDServer
from tests.functional.nbd.nbd_wire import (
    CMD_DISC,
    CMD_FLUSH,
    CMD_READ,
    CMD_TRIM,
    CMD_WRITE,
    CMD_WRITE_ZEROES,
    DISK_SIZE,
    EINVAL,
    EIO,
    ENOMEM,
    ENOSPC,
    EOVERFLOW,
    EPERM,
    ESHUTDOWN,
    FLAG_FUA,
    FLAG_NO_HOLE,
    WireClient,
    wait_for,
)

MAX_BLOCK = 32 * 1024 * 1024


@pytest.fixture
def vol(server, sock):
    c = WireClient(sock)
    c.go("vol")
    yield c
    c.close()


@pytest.fixture
def ro(server, sock):
    c = WireClient(sock)
    c.go("ro")
    yield c
    c.close()


def disk_bytes(disk, offset, length):
    with open(disk, "rb") as f:
        f.seek(offset)
        return f.read(length)


def assert_serves(sock, offset=0, expected=None):
    """A new client can negotiate and read: the server was not hurt."""
    other = WireClient(sock)
    try:
        other.go("vol")
        data = other.read(offset, 4096)
        if expected is not None:
            assert data == expected
    finally:
        other.close()


def test_write_then_read_back(vol, disk):
    data = os.urandom(65536)
    assert vol.write(4096, data) == 0
    assert vol.read(4096, 65536) == data
    assert disk_bytes(disk, 4096, 65536) == data


def test_unaligned_byte_granular_io(vol, disk):
    assert vol.write(3, b"hello") == 0
    assert vol.read(0, 10) == b"\0\0\0hello\0\0"


def test_large_write_and_read_beyond_the_read_buffer(vol, disk):
    data = os.urandom(3 * 1024 * 1024 + 5)
    assert vol.write(100, data) == 0
    assert vol.read(100, len(data)) == data


def test_pipelined_requests_are_answered_in_order(vol):
    blocks = {i: os.urandom(4096) for i in range(64)}
    burst = b""
    for i, data in blocks.items():
        vol.request(CMD_WRITE, i * 4096, 4096, cookie=i, payload=data)
    for i in range(64):
        vol.request(CMD_READ, i * 4096, 4096, cookie=1000 + i)
    vol.request(CMD_FLUSH, cookie=5000)
    for i in range(64):
        assert vol.reply() == (0, i)
    for i in range(64):
        assert vol.reply() == (0, 1000 + i)
        burst += vol.recv_exact(4096)
    assert vol.reply() == (0, 5000)
    assert burst == b"".join(blocks.values())


def test_flush_fua_trim_and_zeroes(vol, disk):
    assert vol.write(0, b"\xaa" * 8192, flags=FLAG_FUA) == 0
    vol.request(CMD_FLUSH, cookie=7)
    assert vol.reply() == (0, 7)
    vol.request(CMD_TRIM, 0, 4096, flags=FLAG_FUA, cookie=8)
    assert vol.reply() == (0, 8)
    vol.request(CMD_WRITE_ZEROES, 4096, 100, cookie=9)
    assert vol.reply() == (0, 9)
    assert vol.read(0, 8192) == bytes(4196) + b"\xaa" * 3996


def test_write_zeroes_no_hole_allocates(vol, disk):
    vol.request(CMD_WRITE_ZEROES, 0, 2 * 1024 * 1024 + 3, flags=FLAG_NO_HOLE | FLAG_FUA)
    assert vol.reply() == (0, 1)
    assert os.stat(disk).st_blocks * 512 >= 2 * 1024 * 1024
    assert disk_bytes(disk, 0, 2 * 1024 * 1024 + 3) == bytes(2 * 1024 * 1024 + 3)


def test_trim_and_zeroes_may_exceed_the_maximum_block(vol):
    vol.request(CMD_TRIM, 0, DISK_SIZE, cookie=3)
    assert vol.reply() == (0, 3)


def test_zero_length_requests_succeed(vol):
    assert vol.read(0, 0) == b""
    assert vol.write(DISK_SIZE, b"") == 0


def test_disc_ends_the_connection(vol, sock):
    vol.request(CMD_DISC)
    assert vol.is_closed()
    assert_serves(sock)


@pytest.mark.parametrize(
    "command,offset,length",
    [
        (CMD_READ, DISK_SIZE - 4095, 4096),
        (CMD_READ, DISK_SIZE, 1),
        (CMD_READ, 2**64 - 1, 1),
        (CMD_TRIM, DISK_SIZE - 1, 2),
        (CMD_WRITE_ZEROES, 0, DISK_SIZE + 1),
    ],
)
def test_out_of_range_is_einval(vol, sock, command, offset, length):
    vol.request(command, offset, length, cookie=42)
    assert vol.reply() == (EINVAL, 42)
    assert vol.read(0, 16) == bytes(16)
    assert_serves(sock)


def test_out_of_range_write_is_einval_and_its_payload_skipped(vol, disk, sock):
    assert vol.write(DISK_SIZE - 10, b"x" * 4096, cookie=43) == EINVAL
    assert vol.read(DISK_SIZE - 4096, 4096) == bytes(4096)
    assert disk_bytes(disk, DISK_SIZE - 4096, 4096) == bytes(4096)
    assert_serves(sock)


def test_read_beyond_the_maximum_block_is_einval(vol, sock):
    vol.request(CMD_READ, 0, MAX_BLOCK + 1, cookie=5)
    assert vol.reply() == (EINVAL, 5)
    assert vol.read(0, 16) == bytes(16)


def test_write_beyond_the_maximum_block_is_einval_then_closed(vol, disk, sock):
    vol.request(CMD_WRITE, 0, MAX_BLOCK + 1, cookie=6, payload=b"\xff" * 4096)
    assert vol.reply() == (EINVAL, 6)
    assert vol.is_closed()
    assert disk_bytes(disk, 0, 4096) == bytes(4096)
    assert_serves(sock)


@pytest.mark.parametrize(
    "command,length,payload",
    [(CMD_WRITE, 4096, b"\xff" * 4096), (CMD_TRIM, 4096, b""), (CMD_WRITE_ZEROES, 4096, b"")],
)
def test_read_only_export_refuses_changes_with_eperm(ro, disk, sock, command, length, payload):
    with open(disk, "r+b") as f:
        f.write(b"\x11" * 4096)
    ro.request(command, 0, length, cookie=9, payload=payload)
    assert ro.reply() == (EPERM, 9)
    assert ro.read(0, 4096) == b"\x11" * 4096
    assert disk_bytes(disk, 0, 4096) == b"\x11" * 4096
    assert_serves(sock, 0, b"\x11" * 4096)


def test_read_only_export_reads_and_flushes(ro):
    assert ro.read(DISK_SIZE - 512, 512) == bytes(512)
    ro.request(CMD_FLUSH, cookie=2)
    assert ro.reply() == (0, 2)


@pytest.mark.parametrize("command", [5, 7, 8, 99, 0xFFFF])
def test_unknown_command_is_einval(vol, sock, command):
    vol.request(command, 0, 0, cookie=77)
    assert vol.reply() == (EINVAL, 77)
    assert vol.read(0, 16) == bytes(16)


@pytest.mark.parametrize("command", [CMD_READ, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES])
def test_unknown_command_flags_are_einval(vol, command):
    vol.request(command, 0, 512, flags=4, cookie=78)  # NBD_CMD_FLAG_DF, not negotiated
    assert vol.reply() == (EINVAL, 78)
    assert vol.read(0, 16) == bytes(16)


def test_write_with_unknown_flags_is_einval_and_writes_nothing(vol, disk):
    assert vol.write(0, b"\xff" * 512, flags=0x8000, cookie=79) == EINVAL
    assert vol.read(0, 512) == bytes(512)


def test_bad_request_magic_hangs_up(vol, sock):
    vol.request(CMD_READ, 0, 512, magic=0x12345678)
    assert vol.is_closed()
    assert_serves(sock)


@pytest.mark.parametrize("sent", [0, 1, 4095])
def test_disconnect_in_the_middle_of_a_write_changes_nothing(vol, disk, sock, sent):
    with open(disk, "r+b") as f:
        f.write(b"\x22" * 4096)
    vol.request(CMD_WRITE, 0, 4096, payload=b"\x99" * sent)
    vol.close()
    assert_serves(sock, 0, b"\x22" * 4096)
    assert disk_bytes(disk, 0, 4096) == b"\x22" * 4096


def test_disconnect_in_the_middle_of_a_header(vol, sock):
    vol.sock.sendall(b"\x25\x60\x95\x13\0\0")
    vol.close()
    assert_serves(sock)


def test_many_clients_at_once(server, sock, disk):
    """Eight clients each write and verify their own region with 32 requests in flight."""
    errors = []

    def worker(index):
        try:
            c = WireClient(sock)
            c.go("vol")
            base = index * 1024 * 1024
            blocks = [os.urandom(4096) for _ in range(32)]
            for round_ in range(4):
                for i, data in enumerate(blocks):
                    c.request(CMD_WRITE, base + i * 4096, 4096, cookie=i, payload=data)
                for i in range(32):
                    c.request(CMD_READ, base + i * 4096, 4096, cookie=100 + i)
                for i in range(32):
                    assert c.reply() == (0, i)
                for i, data in enumerate(blocks):
                    assert c.reply() == (0, 100 + i)
                    assert c.recv_exact(4096) == data, (index, round_, i)
            c.close()
        except Exception as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


# -- errors raised by the device ---------------------------------------------------------
class FaultyDevice(FileDevice):
    """Fault injection (no real part fails on cue): raise ``fault`` from every operation."""

    fault: BaseException = RuntimeError("boom")

    def readinto(self, offset, buf):
        raise self.fault

    def write(self, offset, data, fua=False):
        raise self.fault

    def discard(self, offset, length):
        raise self.fault

    def flush(self):
        raise self.fault


@pytest.mark.parametrize(
    "fault,error",
    [
        (exception.PoolFull(pool="p", detail="test"), ENOSPC),
        (exception.ReadOnlyDevice(name="snap"), EPERM),
        (exception.OutOfRange(device="d", offset=0, length=1, size=0), EINVAL),
        (exception.InvalidInput(reason="bad"), EINVAL),
        (exception.NotFound(kind="Volume", name="v"), EIO),
        (exception.PoolCorrupt(path="p", reason="bad"), EIO),
        (exception.EVSError("going away"), EIO),
        (MemoryError(), ENOMEM),
        (OSError(errno.EIO, "disk"), EIO),
        (OSError(errno.ENOSPC, "full"), ENOSPC),
        (OSError(errno.EFBIG, "big"), EOVERFLOW),
        (OSError(errno.ESHUTDOWN, "down"), ESHUTDOWN),
        (RuntimeError("bug"), EIO),
    ],
)
def test_device_errors_map_to_nbd_errors(server, sock, disk, fault, error):
    class Device(FaultyDevice):
        pass

    Device.fault = fault
    server.add_export("faulty", lambda: Device(disk))
    c = WireClient(sock)
    c.go("faulty")
    c.request(CMD_READ, 0, 512, cookie=1)
    assert c.reply() == (error, 1)
    assert c.write(0, b"x" * 512, cookie=2) == error
    for cookie, command in enumerate((CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES), start=3):
        c.request(command, 0, 512, cookie=cookie)
        assert c.reply() == (error, cookie)
    c.close()
    assert_serves(sock)


def test_flush_replies_only_after_the_device_flush_returned(server, sock, disk):
    entered, release = threading.Event(), threading.Event()

    class GatedDevice(FileDevice):
        def flush(self):
            entered.set()
            release.wait(30)
            super().flush()

    server.add_export("gated", lambda: GatedDevice(disk))
    c = WireClient(sock)
    c.go("gated")
    c.request(CMD_WRITE, 0, 4, cookie=1, payload=b"data")
    c.request(CMD_FLUSH, cookie=2)
    assert entered.wait(30)
    assert c.reply() == (0, 1)  # the write's reply is not held back by the flush
    assert select.select([c.sock], [], [], 0)[0] == []  # nothing more until flush returns
    release.set()
    assert c.reply() == (0, 2)
    c.close()


def test_fua_write_reaches_the_device_with_fua(server, sock, disk):
    calls = []

    class Recording(FileDevice):
        def write(self, offset, data, fua=False):
            calls.append((offset, bytes(data), fua))
            super().write(offset, data, fua)

        def flush(self):
            calls.append("flush")
            super().flush()

    server.add_export("rec", lambda: Recording(disk))
    c = WireClient(sock)
    c.go("rec")
    assert c.write(0, b"ab", flags=FLAG_FUA) == 0
    assert c.write(2, b"cd") == 0
    c.request(CMD_TRIM, 0, 1, flags=FLAG_FUA)
    assert c.reply() == (0, 1)
    assert calls == [(0, b"ab", True), (2, b"cd", False), "flush"]
    c.close()


# -- exports changing under live connections ---------------------------------------------
def test_remove_export_closes_its_connections_and_devices(server, sock, disk):
    closed = []

    class Tracked(FileDevice):
        def close(self):
            closed.append(self)
            super().close()

    server.add_export("temp", lambda: Tracked(disk), aliases=["temp-id"])
    clients = [WireClient(sock) for _ in range(3)]
    for c in clients:
        c.go("temp-id")
    assert server.registry.connection_count("temp") == 3
    server.remove_export("temp")
    assert len(closed) == 3
    for c in clients:
        assert c.is_closed()
    late = WireClient(sock)
    late.greeting()
    assert late.info_request(7, "temp")[0][0] == 2**31 + 6  # NBD_REP_ERR_UNKNOWN
    late.close()
    assert_serves(sock)
    server.add_export("temp", lambda: FileDevice(disk))  # the name is free again
    other = WireClient(sock)
    other.go("temp")
    other.close()


def test_remove_unknown_export_is_not_found(server):
    with pytest.raises(exception.NotFound):
        server.remove_export("nope")


def test_duplicate_names_and_aliases_are_refused(server, disk):
    with pytest.raises(exception.AlreadyExists):
        server.add_export("vol", lambda: FileDevice(disk))
    with pytest.raises(exception.AlreadyExists):
        server.add_export("other", lambda: FileDevice(disk), aliases=["vol-id"])
    assert [export.name for export in server.registry.exports()] == ["ro", "vol"]


def test_close_ends_every_connection(server, sock):
    c = WireClient(sock)
    c.go("vol")
    server.close()
    assert c.is_closed()
    assert not os.path.exists(sock)
    assert server.connection_count() == 0


def test_abrupt_disconnect_closes_the_device(server, sock, disk):
    closed = []

    class Tracked(FileDevice):
        def close(self):
            closed.append(self)
            super().close()

    server.add_export("tracked", lambda: Tracked(disk))
    c = WireClient(sock)
    c.go("tracked")
    c.request(CMD_READ, 0, 512)
    c.close()  # without reading the reply or sending DISC
    wait_for(lambda: closed and server.connection_count() == 0, "the device to close")
    assert server.registry.connection_count("tracked") == 0


def test_silent_client_is_dropped_after_the_handshake_timeout(workdir, disk):
    nbd = NBDServer(limits=Limits(handshake_timeout=0.2))
    nbd.add_export("vol", lambda: FileDevice(disk))
    path = nbd.listen_unix(f"{workdir}/slow.sock")
    c = WireClient(path)
    c.recv_exact(18)
    assert c.is_closed()  # it never sent its flags
    nbd.close()
