"""SocketReader: exact reads from a stream that arrives in arbitrary pieces."""

import socket
import threading

import pytest

from evs_driver import exception
from evs_driver.nbd.stream import SocketReader


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def feed(sock, data, piece):
    def run():
        for i in range(0, len(data), piece):
            sock.sendall(data[i : i + piece])

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_take_read_and_skip_across_pieces(pair, piece):
    server, client = pair
    data = (bytes(range(256)) * 25)[:6200]  # exactly what is read: the feeder must finish
    t = feed(client, data, piece)
    reader = SocketReader(server, size=100)
    start = reader.take(10)
    assert bytes(reader.buffer[start : start + 10]) == data[:10]
    assert reader.read(90) == data[10:100]
    reader.skip(1000)
    assert reader.read(100) == data[1100:1200]
    target = bytearray(5000)
    reader.readinto(memoryview(target))
    assert target == data[1200:6200]
    t.join()


def test_wait_hook_runs_only_when_the_buffer_is_short(pair):
    server, client = pair
    calls = []
    reader = SocketReader(server, size=64)
    reader.before_wait = lambda: calls.append(1)
    client.sendall(b"a" * 40)
    reader.take(20)
    assert calls == [1]
    reader.take(20)  # already buffered
    assert calls == [1]
    client.sendall(b"b" * 10)
    reader.readinto(memoryview(bytearray(10)))
    assert calls == [1, 1]


def test_eof_between_messages(pair):
    server, client = pair
    client.close()
    with pytest.raises(exception.NBDDisconnected, match="between requests"):
        SocketReader(server).take(28)


def test_eof_in_the_middle_of_a_message(pair):
    server, client = pair
    client.sendall(b"abc")
    client.close()
    with pytest.raises(exception.NBDDisconnected, match="middle of a message"):
        SocketReader(server).take(28)


def test_eof_in_a_payload(pair):
    server, client = pair
    client.sendall(b"abc")
    client.close()
    with pytest.raises(exception.NBDDisconnected, match="in a write payload"):
        SocketReader(server).readinto(memoryview(bytearray(10)), "in a write payload")
