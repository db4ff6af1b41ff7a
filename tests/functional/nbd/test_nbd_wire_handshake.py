"""The handshake over a raw socket: every option, and every way a client can get it wrong."""

import struct

import pytest

from evs_driver import exception
from evs_driver.filedev import FileDevice
from tests.functional.nbd.nbd_wire import (
    DISK_SIZE,
    IHAVEOPT,
    OPT_ABORT,
    OPT_EXPORT_NAME,
    OPT_GO,
    OPT_INFO,
    OPT_LIST,
    REP_ACK,
    REP_ERR_INVALID,
    REP_ERR_TOO_BIG,
    REP_ERR_UNKNOWN,
    REP_ERR_UNSUP,
    REP_INFO,
    REP_SERVER,
    WireClient,
)

WRITABLE_FLAGS = 1 | 4 | 8 | 32 | 64 | 256  # HAS_FLAGS FLUSH FUA TRIM WRITE_ZEROES MULTI_CONN
READ_ONLY_FLAGS = 1 | 2 | 4 | 256  # HAS_FLAGS READ_ONLY FLUSH MULTI_CONN


@pytest.fixture
def client(server, sock):
    c = WireClient(sock)
    yield c
    c.close()


def assert_serves(sock):
    """Another client can still negotiate and read: the server was not hurt."""
    other = WireClient(sock)
    try:
        assert other.go("vol") == (DISK_SIZE, WRITABLE_FLAGS)
        assert other.read(0, 512) == bytes(512)
    finally:
        other.close()


def test_greeting_offers_fixed_newstyle_and_no_zeroes(client):
    assert client.greeting() == 3


def test_go_reports_size_flags_and_block_sizes(client):
    client.greeting()
    replies = client.info_request(OPT_GO, "vol", infos=(1, 2, 3))
    infos = {payload[:2]: payload[2:] for reply_type, payload in replies if reply_type == REP_INFO}
    assert replies[-1] == (REP_ACK, b"")
    assert infos[b"\0\0"] == struct.pack(">QH", DISK_SIZE, WRITABLE_FLAGS)
    assert infos[b"\0\1"] == b"vol"
    assert infos[b"\0\2"] == b"a volume"
    assert infos[b"\0\3"] == struct.pack(">III", 1, 4096, 32 * 1024 * 1024)


def test_read_only_export_flags(client):
    assert client.go("ro") == (DISK_SIZE, READ_ONLY_FLAGS)


def test_alias_reaches_the_same_export(client):
    client.greeting()
    replies = client.info_request(OPT_GO, "vol-id", infos=(1,))
    assert (REP_INFO, b"\0\1vol") in replies
    assert replies[-1][0] == REP_ACK


def test_info_then_go_on_one_connection(client):
    client.greeting()
    assert client.info_request(OPT_INFO, "ro")[-1][0] == REP_ACK
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    assert client.read(0, 16) == bytes(16)


def test_list_names_every_export(client):
    client.greeting()
    client.option(OPT_LIST)
    names = []
    while True:
        option, reply_type, data = client.option_reply()
        assert option == OPT_LIST
        if reply_type == REP_ACK:
            break
        assert reply_type == REP_SERVER
        (length,) = struct.unpack(">I", data[:4])
        names.append((data[4 : 4 + length], data[4 + length :]))
    assert names == [(b"ro", b""), (b"vol", b"a volume")]


def test_list_with_data_is_invalid(client, sock):
    client.greeting()
    client.option(OPT_LIST, b"junk")
    assert client.option_reply()[1] == REP_ERR_INVALID
    client.option(OPT_ABORT)
    assert client.option_reply() == (OPT_ABORT, REP_ACK, b"")


def test_unknown_export_is_refused_and_haggling_goes_on(client):
    client.greeting()
    replies = client.info_request(OPT_GO, "nope")
    assert replies[0][0] == REP_ERR_UNKNOWN
    assert b"nope" in replies[0][1]
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK


@pytest.mark.parametrize(
    "data",
    [
        b"",  # shorter than a name length and an info count
        struct.pack(">I", 10) + b"vol",  # name longer than the data
        struct.pack(">I", 3) + b"vol" + struct.pack(">H", 2) + b"\0\3",  # info count too big
        struct.pack(">I", 3) + b"vol" + struct.pack(">H", 0) + b"x",  # trailing byte
        struct.pack(">I", 5000) + bytes(5000) + struct.pack(">H", 0),  # name over 4096 bytes
    ],
)
def test_malformed_go_is_invalid(client, sock, data):
    client.greeting()
    client.option(OPT_GO, data)
    assert client.option_reply()[1] == REP_ERR_INVALID
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    assert_serves(sock)


def test_name_that_is_not_utf8_is_unknown(client):
    client.greeting()
    data = struct.pack(">I", 2) + b"\xff\xfe" + struct.pack(">H", 0)
    client.option(OPT_GO, data)
    assert client.option_reply()[1] == REP_ERR_UNKNOWN


@pytest.mark.parametrize("option", [4, 11, 12, 4242, 2**32 - 1])
def test_unknown_options_get_unsup(client, option):
    client.greeting()
    client.option(option, b"some data")
    got_option, reply_type, _ = client.option_reply()
    assert (got_option, reply_type) == (option, REP_ERR_UNSUP)
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK


def test_abort_is_acknowledged_then_closed(client):
    client.greeting()
    client.option(OPT_ABORT)
    assert client.option_reply() == (OPT_ABORT, REP_ACK, b"")
    assert client.is_closed()


def test_export_name_for_old_clients(client):
    client.greeting(client_flags=1)  # fixed newstyle, but zeroes wanted
    client.option(OPT_EXPORT_NAME, b"vol")
    size, flags = struct.unpack(">QH", client.recv_exact(10))
    assert (size, flags) == (DISK_SIZE, WRITABLE_FLAGS)
    assert client.recv_exact(124) == bytes(124)
    assert client.read(0, 8) == bytes(8)


def test_export_name_without_zeroes(client):
    client.greeting(client_flags=3)
    client.option(OPT_EXPORT_NAME, b"ro")
    assert struct.unpack(">QH", client.recv_exact(10)) == (DISK_SIZE, READ_ONLY_FLAGS)
    assert client.read(0, 8) == bytes(8)  # no 124 zero bytes came before the reply


def test_export_name_unknown_hangs_up(client, sock):
    client.greeting()
    client.option(OPT_EXPORT_NAME, b"nope")
    assert client.is_closed()
    assert_serves(sock)


def test_non_fixed_client_may_only_send_export_name(client, sock):
    client.greeting(client_flags=0)
    client.option(OPT_LIST)
    assert client.is_closed()
    assert_serves(sock)


@pytest.mark.parametrize("flags", [4, 0x80000000, 0xFFFFFFFF])
def test_unknown_client_flags_hang_up(client, sock, flags):
    client.greeting(client_flags=flags)
    assert client.is_closed()
    assert_serves(sock)


def test_bad_option_magic_hangs_up(client, sock):
    client.greeting()
    client.option(OPT_LIST, magic=b"IHAVEOPX")
    assert client.is_closed()
    assert_serves(sock)


def test_oversized_option_is_too_big_and_hangs_up(client, sock):
    client.greeting()
    client.sock.sendall(IHAVEOPT + struct.pack(">II", OPT_GO, 10**9))
    option, reply_type, _ = client.option_reply()
    assert (option, reply_type) == (OPT_GO, REP_ERR_TOO_BIG)
    assert client.is_closed()
    assert_serves(sock)


def test_endless_haggling_is_cut_off(client, sock):
    client.greeting()
    for _ in range(256):
        client.option(4242)
        assert client.option_reply()[1] == REP_ERR_UNSUP
    assert client.is_closed()  # 256 options without picking an export is the limit
    assert_serves(sock)


def test_disconnect_during_handshake(server, sock):
    for sent in (b"", b"\0\0", b"\0\0\0\3IHAVE"):
        c = WireClient(sock)
        c.recv_exact(18)
        c.sock.sendall(sent)
        c.close()
    assert_serves(sock)


@pytest.mark.parametrize(
    "error,message",
    [
        (exception.NotFound(kind="Volume", name="gone"), b"Volume gone not found."),
        (FileNotFoundError(2, "No such file", "/x"), b"[Errno 2] No such file: '/x'"),
        (RuntimeError("\u00e9" * 600), "\u00e9".encode() * 512),  # cut at whole characters
    ],
)
def test_failing_opener_is_reported_as_unknown(server, sock, error, message):
    def opener():
        raise error

    server.add_export("broken", opener)
    c = WireClient(sock)
    c.greeting()
    for option in (OPT_INFO, OPT_GO):
        assert c.info_request(option, "broken") == [(REP_ERR_UNKNOWN, message)]
    c.close()
    assert_serves(sock)


def test_unknown_name_is_echoed_as_valid_utf8(client):
    client.greeting()
    data = struct.pack(">I", 5) + b"ab\xffcd" + struct.pack(">H", 0)
    client.option(OPT_GO, data)
    assert client.option_reply() == (OPT_GO, REP_ERR_UNKNOWN, b"no such export: abcd")


def test_device_read_only_makes_the_export_read_only(server, sock, disk):
    server.add_export("snap", lambda: FileDevice(disk, read_only=True))
    c = WireClient(sock)
    assert c.go("snap") == (DISK_SIZE, READ_ONLY_FLAGS)
    c.close()
