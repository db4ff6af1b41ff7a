"""ReplyWriter: coalesced replies arrive complete and in order."""

import socket
import struct
import threading

import pytest

from evs_driver.nbd.replies import MAX_PARTS, ReplyWriter


def header(error, cookie):
    return struct.pack(">IIQ", 0x67446698, error, cookie)


def recv_all(sock, length):
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        assert chunk
        data += chunk
    return data


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_nothing_leaves_before_flush(pair):
    server, client = pair
    writer = ReplyWriter(server)
    writer.reply(1, 0)
    view = writer.buffer(4)
    view[:] = b"data"
    writer.data(2, 0, view)
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)
    writer.flush()
    client.setblocking(True)
    assert recv_all(client, 36) == header(0, 1) + header(0, 2) + b"data"


def test_full_arena_and_long_queue_are_sent_early(pair):
    server, client = pair
    writer = ReplyWriter(server, arena_size=8)
    first = writer.buffer(6)
    first[:] = b"first!"
    writer.data(1, 0, first)
    second = writer.buffer(6)  # does not fit: the queue goes out first
    assert recv_all(client, 22) == header(0, 1) + b"first!"
    second[:] = b"second"
    writer.data(2, 0, second)
    piece = writer.scratch(8)  # a read larger than the arena: the queue leaves first
    assert recv_all(client, 22) == header(0, 2) + b"second"
    piece[:] = b"12345678"
    writer.send_piece(3, 0, piece, first=True, last=False)
    piece = writer.scratch(1)
    piece[:] = b"9"
    writer.send_piece(3, 8, piece, first=False, last=True)
    assert recv_all(client, 25) == header(0, 3) + b"123456789"
    for cookie in range(MAX_PARTS):
        writer.reply(cookie, 22)
    assert recv_all(client, 16 * MAX_PARTS) == b"".join(header(22, c) for c in range(MAX_PARTS))


def test_partial_sends_are_completed(pair):
    server, client = pair
    server.settimeout(30)  # a socket with a timeout may send only part of a message
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer = ReplyWriter(server, arena_size=4 * 1024 * 1024)
    expected = b""
    for cookie in range(100):
        view = writer.buffer(30000)
        view[:] = bytes([cookie]) * 30000
        writer.data(cookie, 0, view)
        expected += header(0, cookie) + bytes([cookie]) * 30000
    received = []
    t = threading.Thread(target=lambda: received.append(recv_all(client, len(expected))))
    t.start()
    writer.flush()
    t.join(60)
    assert received == [expected]
