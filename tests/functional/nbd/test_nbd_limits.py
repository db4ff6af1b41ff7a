"""Bounded resources over real sockets: connection caps, bytes in flight, and timeouts.

Each cap is hit by a hostile or broken client; the client gets the NBD error (or a closed
connection where the protocol has no other answer), and the server keeps serving others.
"""

import os
import socket
import struct
import time

import pytest

from evs_driver.filedev import FileDevice
from evs_driver.nbd import Limits, NBDServer
from evs_driver.nbd.limits import REFUSING_AT_ONCE
from tests.functional.nbd.nbd_clients import requires, run
from tests.functional.nbd.nbd_wire import (
    CMD_READ,
    CMD_WRITE,
    EIO,
    FLAG_FUA,
    OPT_ABORT,
    OPT_EXPORT_NAME,
    OPT_GO,
    REP_ACK,
    REP_ERR_POLICY,
    Closed,
    WireClient,
    wait_for,
)

KiB, MiB = 1024, 1024 * 1024


class Recording(FileDevice):
    """A file device that notes the size of every read and write it is asked for."""

    calls: list

    def readinto(self, offset, buf):
        self.calls.append(("read", len(buf)))
        super().readinto(offset, buf)

    def write(self, offset, data, fua=False):
        self.calls.append(("write", len(data), fua))
        super().write(offset, data, fua)

    def flush(self):
        self.calls.append(("flush",))
        super().flush()


@pytest.fixture
def serve(workdir, disk):
    """``serve(**limits)``: a server of ``vol`` and ``other`` (both on ``disk``) and its socket."""
    servers = []

    def make(**limits):
        nbd = NBDServer(limits=Limits(**limits))
        nbd.add_export("vol", lambda: FileDevice(disk))
        nbd.add_export("other", lambda: FileDevice(disk))
        servers.append(nbd)
        return nbd, nbd.listen_unix(f"{workdir}/limits{len(servers)}.sock")

    yield make
    for nbd in servers:
        nbd.close()


def connected(path, name="vol") -> WireClient:
    client = WireClient(path)
    client.go(name)
    return client


def refused_go(path, name="vol") -> bytes:
    """Ask for ``name`` with NBD_OPT_GO; assert the policy error and return its message."""
    client = WireClient(path)
    try:
        client.greeting()
        replies = client.info_request(OPT_GO, name)
        assert [reply_type for reply_type, _ in replies] == [REP_ERR_POLICY], replies
        client.option(OPT_ABORT)
        assert client.option_reply()[1] == REP_ACK
        return replies[0][1]
    finally:
        client.close()


# -- connection caps ---------------------------------------------------------------------
def test_connection_over_the_server_cap_hears_why_then_the_next_is_served(serve):
    nbd, path = serve(max_connections=2)
    first, second = connected(path), connected(path, "other")
    assert b"maximum of 2 connections" in refused_go(path)
    first.close()
    wait_for(lambda: nbd.slots.used == 1, "the closed connection's slot")
    third = connected(path)
    assert third.read(0, 512) == bytes(512)
    second.close()
    third.close()


def test_export_name_over_the_cap_is_hung_up_on(serve):
    _nbd, path = serve(max_connections=1)
    held = connected(path)
    client = WireClient(path)
    client.greeting()
    client.option(OPT_EXPORT_NAME, b"vol")  # this option has no error reply
    assert client.is_closed()
    held.close()


def test_a_flood_over_the_cap_is_closed_without_a_thread_each(serve):
    nbd, path = serve(max_connections=1)
    held = connected(path)
    refused = [WireClient(path) for _ in range(REFUSING_AT_ONCE)]
    for client in refused:
        client.recv_exact(18)  # each is greeted, to hear why once it asks
    beyond = WireClient(path)
    with pytest.raises(Closed):
        beyond.recv_exact(18)  # closed before any greeting
    for client in refused:
        client.close()
    beyond.close()
    wait_for(lambda: nbd.connection_count() == 1, "the refused connections to end")
    assert b"maximum of 1 connections" in refused_go(path)
    assert held.read(0, 512) == bytes(512)
    held.close()


def test_connection_over_the_export_cap_may_pick_another_export(serve):
    _nbd, path = serve(max_connections_per_export=1)
    held = connected(path)
    client = WireClient(path)
    client.greeting()
    replies = client.info_request(OPT_GO, "vol")
    assert replies == [(REP_ERR_POLICY, b"NBD export vol already has its maximum of 1 connections")]
    assert client.info_request(OPT_GO, "other")[-1][0] == REP_ACK
    assert client.read(0, 512) == bytes(512)
    client.close()
    held.close()


@requires("nbdinfo", "qemu-img")
def test_real_clients_are_refused_over_the_cap_and_work_after(serve):
    nbd, path = serve(max_connections=1)
    uri = nbd.uri("vol")
    held = connected(path, "other")
    result = run("nbdinfo", uri, ok=False)
    assert result.returncode != 0
    assert "server replied with error to opt_go" in result.stderr  # libnbd 1.14 hides why
    result = run("qemu-img", "info", uri, ok=False)
    assert result.returncode != 0
    assert "server reported: the NBD server has its maximum of 1 connections" in result.stderr
    held.close()
    wait_for(lambda: nbd.slots.used == 0, "the held connection's slot")
    assert "export-size" in run("nbdinfo", "--json", uri).stdout
    assert "virtual size: 16 MiB" in run("qemu-img", "info", uri).stdout


# -- bytes in flight ---------------------------------------------------------------------
def test_large_reads_and_writes_pass_through_the_cap_in_pieces(serve, disk):
    nbd, path = serve(max_bytes_in_flight=64 * KiB)
    Recording.calls = []
    nbd.add_export("rec", lambda: Recording(disk))
    client = connected(path, "rec")
    data = os.urandom(MiB + 5)
    assert client.write(100, data) == 0
    assert client.read(100, len(data)) == data
    largest = max(call[1] for call in Recording.calls)
    assert largest == 64 * KiB  # no piece larger than the cap reached the device
    with open(disk, "rb") as f:
        f.seek(100)
        assert f.read(len(data)) == data
    Recording.calls = []
    assert client.write(0, data, flags=FLAG_FUA) == 0
    assert Recording.calls[-1] == ("flush",)  # FUA over pieces: durable before the reply
    assert all(call[2] is False for call in Recording.calls[:-1])
    client.close()


def test_read_failing_after_its_first_piece_hangs_up(serve, disk):
    """Fault injection (a real disk does not fail on cue): the second piece fails."""

    class FailsLater(FileDevice):
        def readinto(self, offset, buf):
            if offset >= 64 * KiB:
                raise OSError(5, "injected")
            super().readinto(offset, buf)

    nbd, path = serve(max_bytes_in_flight=64 * KiB)
    nbd.add_export("late", lambda: FailsLater(disk))
    client = connected(path, "late")
    client.request(CMD_READ, 0, 128 * KiB, cookie=7)
    assert client.reply() == (0, 7)  # the header said success before the failure
    client.recv_exact(64 * KiB)
    assert client.is_closed()  # a simple reply cannot report it: only hanging up is honest
    other = connected(path, "late")
    other.request(CMD_READ, 64 * KiB, 128 * KiB, cookie=8)
    assert other.reply() == (EIO, 8)  # failing in the first piece: a plain error reply
    assert other.read(0, 4 * KiB) == bytes(4 * KiB)
    other.close()


def test_write_failing_in_a_piece_skips_the_rest_and_serves_on(serve, disk):
    """Fault injection (a real disk does not fail on cue): the second piece fails."""

    class FailsLater(FileDevice):
        def write(self, offset, data, fua=False):
            if offset >= 64 * KiB:
                raise OSError(5, "injected")
            super().write(offset, data, fua)

    nbd, path = serve(max_bytes_in_flight=64 * KiB)
    nbd.add_export("late", lambda: FailsLater(disk))
    client = connected(path, "late")
    assert client.write(0, b"\x01" * (512 * KiB), cookie=3) == EIO
    assert client.read(0, 4 * KiB, cookie=4) == b"\x01" * (4 * KiB)  # in step again
    client.close()


# -- timeouts ----------------------------------------------------------------------------
def test_silent_handshake_is_dropped(serve):
    _nbd, path = serve(handshake_timeout=0.3)
    client = WireClient(path)
    client.recv_exact(18)
    assert client.is_closed()  # it never sent its flags


def test_trickling_handshake_is_dropped_at_the_deadline(serve):
    """A byte at a time keeps each read short; the handshake as a whole still times out."""
    nbd, path = serve(handshake_timeout=0.3)
    client = WireClient(path)
    client.greeting()
    option = b"IHAVEOPT" + struct.pack(">II", OPT_GO, 200) + bytes(200)
    with pytest.raises(OSError):
        for byte in option:  # 216 bytes at 50 ms would take 10 s
            client.sock.sendall(bytes([byte]))
            time.sleep(0.05)
    client.close()
    wait_for(lambda: nbd.connection_count() == 0, "the connection to end")


def test_half_sent_request_is_dropped_after_the_io_timeout(serve, disk):
    nbd, path = serve(io_timeout=0.3)
    client = connected(path)
    client.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, CMD_WRITE, 1, 0, 64 * KiB))
    client.sock.sendall(b"\xff" * 1000)  # then nothing
    assert client.is_closed()
    with open(disk, "rb") as f:
        assert f.read(1000) == bytes(1000)  # nothing half written
    client = connected(path)
    client.sock.sendall(b"\x25\x60")  # half a request header
    assert client.is_closed()


def test_client_not_reading_replies_is_dropped_after_the_io_timeout(serve):
    nbd, path = serve(io_timeout=0.3)
    client = connected(path)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for cookie in range(4):
        client.request(CMD_READ, 0, 4 * MiB, cookie=cookie)  # never read
    wait_for(lambda: nbd.connection_count() == 0, "the stuck connection to be dropped")
    client.close()


def test_idle_client_between_requests_is_kept(serve):
    _nbd, path = serve(io_timeout=0.2)
    client = connected(path)
    time.sleep(1.0)  # five timeouts with nothing half sent: idle is allowed
    assert client.read(0, 512) == bytes(512)
    client.close()
