"""FLUSH beside other requests: a slow flush does not hold back the requests behind it,
FLUSHes received while one runs share the next device flush, and each is answered only
once a device flush that began after it was received returned.

The devices here hold their flush on cue (fault injection: no real disk is slow on cue);
their data is a real file.
"""

import select
import threading

import pytest

from evs_driver.filedev import FileDevice
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice
from tests.functional.nbd.nbd_wire import CMD_DISC, CMD_FLUSH, CMD_READ, CMD_WRITE, WireClient

HELD = 30  # seconds a held flush waits at most (bounds a hang; measures nothing)


class HeldFlushes(FileDevice):
    """A file device whose flushes are logged and, while ``gate`` is clear, wait for it."""

    log: list
    gate: threading.Event
    entered: threading.Event

    def write(self, offset, data, fua=False):
        self.log.append(("write", offset))
        super().write(offset, data, fua)

    def flush(self):
        self.log.append("flush begins")
        self.entered.set()
        assert self.gate.wait(HELD)
        super().flush()
        self.log.append("flush returned")


@pytest.fixture
def held(server, sock, disk):
    """A connection to an export whose device flushes only once ``gate`` is set."""

    class Device(HeldFlushes):
        log, gate, entered = [], threading.Event(), threading.Event()

    server.add_export("held", lambda: Device(disk))
    client = WireClient(sock)
    client.go("held")
    yield client, Device
    Device.gate.set()
    client.close()


def _nothing_to_read(client) -> bool:
    return select.select([client.sock], [], [], 0)[0] == []


def test_requests_behind_a_held_flush_are_answered_before_it(held):
    client, device = held
    client.request(CMD_WRITE, 0, 4, cookie=1, payload=b"data")
    client.request(CMD_FLUSH, cookie=2)
    assert device.entered.wait(HELD)
    assert client.reply() == (0, 1)
    client.request(CMD_WRITE, 4096, 4, cookie=3, payload=b"late")
    client.request(CMD_READ, 0, 4, cookie=4)
    assert client.reply() == (0, 3)  # served while the flush still syncs
    assert client.reply() == (0, 4)
    assert client.recv_exact(4) == b"data"
    assert _nothing_to_read(client)  # the flush is not answered before its device flush
    device.gate.set()
    assert client.reply() == (0, 2)
    assert device.log == [("write", 0), "flush begins", ("write", 4096), "flush returned"]


def test_flushes_received_during_a_flush_share_the_next_one(held):
    client, device = held
    client.request(CMD_FLUSH, cookie=1)
    assert device.entered.wait(HELD)
    client.request(CMD_WRITE, 0, 4, cookie=2, payload=b"data")
    assert client.reply() == (0, 2)
    for cookie in (3, 4, 5):
        client.request(CMD_FLUSH, cookie=cookie)
    client.request(CMD_READ, 0, 4, cookie=6)  # read after the flushes: they were all received
    assert client.reply() == (0, 6)
    client.recv_exact(4)
    assert _nothing_to_read(client)
    device.gate.set()
    assert sorted(client.reply() for _ in range(4)) == [(0, 1), (0, 3), (0, 4), (0, 5)]
    # One device flush for the first; one more, begun after the write, for the other three.
    assert device.log == [
        "flush begins",
        ("write", 0),
        "flush returned",
        "flush begins",
        "flush returned",
    ]


def test_a_disconnect_answers_the_flushes_still_running(held):
    client, device = held
    client.request(CMD_FLUSH, cookie=7)
    assert device.entered.wait(HELD)
    client.request(CMD_DISC)
    device.gate.set()
    assert client.reply() == (0, 7)
    assert client.sock.recv(1) == b""  # then the server closes


def test_a_device_without_concurrent_flushes_keeps_strict_order(server, sock, disk):
    class Inline(HeldFlushes):
        concurrent_flush = False
        log, gate, entered = [], threading.Event(), threading.Event()

    server.add_export("inline", lambda: Inline(disk))
    client = WireClient(sock)
    try:
        client.go("inline")
        client.request(CMD_FLUSH, cookie=1)
        assert Inline.entered.wait(HELD)
        client.request(CMD_READ, 0, 4, cookie=2)
        assert _nothing_to_read(client)
        Inline.gate.set()
        assert client.reply() == (0, 1)
        assert client.reply() == (0, 2)
    finally:
        Inline.gate.set()
        client.close()


def test_flushes_on_many_connections_to_a_pool_volume_are_all_durable(server, sock, tmp_path):
    with Pool.create(str(tmp_path / "pool"), 64 << 20, background=False) as pool:
        pool.create_volume("v", 16 << 20)
        server.add_export("pooled", lambda: PoolDevice(pool, "v"))
        clients = [WireClient(sock) for _ in range(4)]
        for client in clients:
            client.go("pooled")
        for number, client in enumerate(clients):
            client.request(CMD_WRITE, number << 20, 4, cookie=1, payload=b"wr%02d" % number)
            client.request(CMD_FLUSH, cookie=2)
        for client in clients:
            assert sorted(client.reply() for _ in range(2)) == [(0, 1), (0, 2)]
            client.close()
        report = pool.check_committed()  # the flushes committed: nothing left to commit
        assert report.clean and not pool._transaction.pending()
        assert [pool.read("v", n << 20, 4) for n in range(4)] == [
            b"wr00",
            b"wr01",
            b"wr02",
            b"wr03",
        ]
