"""VolumeService in this process: dispatch, serve rules, sessions, the write barrier."""

import os
import shutil
import socket
import stat
import tempfile
import threading
import time

import pytest

from evs_driver import exception
from evs_driver.cmd import client as client_module
from evs_driver.cmd.client import EmbeddedClient, ServiceClient, make_client
from evs_driver.locking import FileLock
from evs_driver.manager import VolumeManager
from evs_driver.service import protocol
from evs_driver.service.control import Session
from evs_driver.service.exporter import NBDExporter
from evs_driver.service.service import VolumeService
from tests.functional.nbd.nbd_clients import requires
from tests.functional.nbd.nbd_wire import WireClient
from tests.unit.test_conf import make_conf

BLOCK = 4096


@pytest.fixture
def state():
    path = tempfile.mkdtemp(prefix="evssvc-", dir="/tmp")  # unix socket paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def conf(state):
    return make_conf(state)


@pytest.fixture
def service(conf):
    svc = VolumeService(conf)
    svc.start()
    yield svc
    svc.close()


def call(svc: VolumeService, method: str, *args, **kwargs):
    return svc.handle(method, list(args), kwargs, Session(os.getpid()))


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    """Wait for another thread's work (not a timing assertion: it only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_control_socket_is_owner_only_and_answers_ping(service, state):
    path = os.path.join(state, protocol.SOCKET_NAME)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client = ServiceClient.connect(path)
    assert client.call("ping") == {"pid": os.getpid(), "state_path": state}
    client.close()


@pytest.mark.parametrize(
    "line, message",
    [
        (b"hello\n", "not JSON"),
        (b'{"method": "volume_show"}\n', "missing a required argument"),
        (b'{"method": "volume_show", "args": ["a", "b", "c"]}\n', "too many positional"),
        (b'{"method": "volume_list", "kwargs": {"progress": 1}}\n', "not remote arguments"),
        (b'{"method": "volume_serve", "kwargs": {"volume": "v", "session": 1}}\n', "not remote"),
        (b'{"method": "volume_create", "kwargs": {"size": "big"}}\n', "whole number of GiB"),
        (b'{"method": "volume_show", "args": [["x"]]}\n', "named by its id or name"),
    ],
)
def test_malformed_requests_get_error_replies_and_the_service_goes_on(
    service, state, line, message
):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(state, protocol.SOCKET_NAME))
    reader = sock.makefile("rb")
    sock.sendall(line)
    with pytest.raises(exception.EVSError, match=message):
        protocol.parse_reply(reader.readline())
    sock.sendall(protocol.request("volume_list"))  # same connection still works
    assert protocol.parse_reply(reader.readline()) == []
    sock.close()


def test_overlong_request_gets_an_error_then_the_connection_ends(service, state):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(state, protocol.SOCKET_NAME))
    reader = sock.makefile("rb")
    sock.sendall(b"x" * (protocol.MAX_LINE + 10) + b"\n")
    with pytest.raises(exception.InvalidInput, match="longer than"):
        protocol.parse_reply(reader.readline())
    assert reader.readline() == b""
    sock.close()


def test_second_service_on_the_same_state_path_is_refused(service, conf):
    with pytest.raises(exception.ServiceRunning, match="already runs"):
        VolumeService(conf)


def test_make_client_picks_the_service_when_it_answers(service, conf):
    client = make_client(conf)
    try:
        assert isinstance(client, ServiceClient)
        client.volume_create(size=1, name="v")
        assert [v["name"] for v in client.volume_list()] == ["v"]
        with pytest.raises(exception.NotFound):
            client.volume_show("nope")
    finally:
        client.close()


def test_make_client_is_embedded_without_service_even_with_a_stale_socket(conf, state):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(os.path.join(state, protocol.SOCKET_NAME))  # bound, never listening: dead
    stale.close()
    client = make_client(conf)
    try:
        assert isinstance(client, EmbeddedClient)
    finally:
        client.close()


def test_served_snapshot_cannot_be_deleted_until_unserved(service):
    call(service, "volume_create", size=1, name="v")
    call(service, "snapshot_create", "v", name="s")
    served = call(service, "snapshot_serve", "s")
    assert served["read_only"] is True and served["access_mode"] == "ro"
    with pytest.raises(exception.InvalidOperation, match="snapshot unserve"):
        call(service, "snapshot_delete", "s")
    with pytest.raises(exception.InvalidOperation, match="is served"):
        call(service, "volume_delete", "v", cascade=True)
    assert call(service, "snapshot_show", "s")["status"] == "available"
    call(service, "snapshot_unserve", "s")
    assert call(service, "snapshot_unserve", "s")["served"] is False  # again: nothing to do
    call(service, "volume_delete", "v", cascade=True)
    assert call(service, "volume_list") == []


def test_serve_makes_the_volume_in_use_and_unserve_available(service):
    call(service, "volume_create", size=1, name="v")
    served = call(service, "volume_serve", "v", read_only=True)
    assert served["access_mode"] == "ro" and served["uri"].startswith("nbd+unix:///")
    assert call(service, "volume_show", "v")["status"] == "in-use"
    with pytest.raises(exception.InvalidStatus, match="in-use"):
        call(service, "volume_serve", "v")
    call(service, "snapshot_create", "v", name="s")  # allowed while in-use (rule 2.1)
    with pytest.raises(exception.InvalidStatus, match="reverting"):
        call(service, "volume_revert", "v", "s")  # rule 3.2: detached only
    call(service, "volume_unserve", "v")
    assert call(service, "volume_show", "v")["status"] == "available"
    assert call(service, "export_list") == []


def test_scoped_export_ends_with_its_connection(service, state):
    call(service, "volume_create", size=1, name="v")
    client = ServiceClient.connect(os.path.join(state, protocol.SOCKET_NAME))
    client.call("volume_serve", "v", scoped=True)
    assert call(service, "volume_show", "v")["status"] == "in-use"
    client.close()
    wait_for(lambda: call(service, "volume_show", "v")["status"] == "available", "the detach")
    assert service.exporter.exports() == []


def test_close_detaches_served_volumes_and_closes_the_pool(conf, state):
    svc = VolumeService(conf)
    svc.start()
    call(svc, "volume_create", size=1, name="v")
    served = call(svc, "volume_serve", "v")
    client = WireClient(served["socket"])
    client.go(served["export_name"])
    assert client.write(0, b"x" * BLOCK, flags=1) == 0  # FUA
    svc.close()
    assert client.is_closed()
    assert not os.path.exists(os.path.join(state, protocol.SOCKET_NAME))
    m = VolumeManager(conf)
    try:
        assert m.get_volume("v").status == "available"
        volume = m.get_volume("v")
        with m.drivers["local"].open_device(volume, writable=False) as dev:
            assert dev.read(0, BLOCK) == b"x" * BLOCK
    finally:
        m.close()


def test_volume_of_a_dead_attacher_is_available_at_next_start(conf):
    exporter = NBDExporter(default_socket=None)
    first = VolumeManager(conf, exporter=exporter)
    first.create_volume(1, name="served")
    first.create_volume(1, name="by-hand")
    listen = {"socket": os.path.join(conf.state_path, "private.sock")}
    first.attach_volume("served", {"nbd_listen": listen})
    first.reset_status("volume", "by-hand", "in-use")
    exporter.close()
    first.close()  # its owner token is gone, as after a kill -9
    second = VolumeManager(conf)
    try:
        assert second.get_volume("served").status == "available"
        assert second.get_volume("by-hand").status == "in-use"  # an operator's choice stays
    finally:
        second.close()


def test_embedded_manager_cannot_open_pools_the_service_holds(service, state):
    call(service, "volume_create", size=1, name="v")
    call(service, "volume_serve", "v")
    embedded = VolumeManager(make_conf(state, lock_timeout=0))
    try:
        with pytest.raises(exception.ConcurrentOperation, match="lock_timeout"):
            embedded.create_volume(1, name="w")  # backends are opened on first use
    finally:
        embedded.close()
    assert call(service, "volume_show", "v")["status"] == "in-use"


def test_snapshot_of_a_served_volume_has_every_acknowledged_write_and_none_after(service):
    """Rule 2.1's barrier: sequential writes through NBD; the snapshot holds a prefix of them."""
    call(service, "volume_create", size=1, name="v")
    served = call(service, "volume_serve", "v")
    client = WireClient(served["socket"])
    client.go(served["export_name"])
    writes = 600
    acked = []  # index of each acknowledged write, in order
    snapped = threading.Event()
    sent_after = []

    def writer():
        for i in range(writes):
            if snapped.is_set() and not sent_after:
                sent_after.append(i)  # first write sent after the snapshot returned
            assert client.write(i * BLOCK, i.to_bytes(4, "big") * (BLOCK // 4)) == 0
            acked.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(acked) >= writes // 4, "some writes")
    before = len(acked)  # writes 0..before-1 were acknowledged before the snapshot started
    call(service, "snapshot_create", "v", name="s")
    snapped.set()
    thread.join()
    snapshot = service.manager.get_snapshot("s")
    driver = service.manager.drivers["local"]
    with driver.open_device(snapshot, writable=False) as dev:
        data = dev.read(0, writes * BLOCK)
    held = [data[i * BLOCK : i * BLOCK + 4] == i.to_bytes(4, "big") for i in range(writes)]
    count = held.index(False) if False in held else writes
    assert held == [True] * count + [False] * (writes - count)  # a prefix: no torn barrier
    assert count >= before
    if sent_after:
        assert count <= sent_after[0]
    client.close()


def test_concurrent_clients_share_the_manager(service, state, conf):
    conf.set_override("max_snapshots_per_volume", 0)
    path = os.path.join(state, protocol.SOCKET_NAME)
    errors = []

    def work(n):
        client = ServiceClient.connect(path)
        try:
            client.volume_create(size=1, name=f"v{n}")
            for k in range(5):
                client.snapshot_create(f"v{n}", name=f"s{n}-{k}")
            client.volume_serve(f"v{n}", scoped=True)
            client.snapshot_create(f"v{n}", name=f"s{n}-in-use")
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(call(service, "snapshot_list")) == 24
    wait_for(lambda: call(service, "export_list") == [], "the scoped exports to end")
    # The export ends first, then the volume is marked available: wait for both.
    statuses = lambda: {v["status"] for v in call(service, "volume_list")}  # noqa: E731
    wait_for(lambda: statuses() == {"available"}, "the scoped detaches to finish")
    assert statuses() == {"available"}
    assert call(service, "pool_check") == {"local": []}


def test_client_of_a_service_that_went_away_gets_a_clear_error(conf, state):
    svc = VolumeService(conf)
    svc.start()
    client = ServiceClient.connect(os.path.join(state, protocol.SOCKET_NAME))
    svc.close()
    with pytest.raises(exception.ServiceUnavailable, match="not answering"):
        client.volume_list()
    client.close()


def test_a_service_that_holds_the_lock_but_never_answers_is_reported(conf, state, monkeypatch):
    monkeypatch.setattr(client_module, "SERVICE_WAIT", 0.2)  # the wait itself is not under test
    conf.set_override("lock_timeout", 0)  # no running commands for a service to wait for
    starting = FileLock(protocol.lock_path(conf), timeout=0)
    starting.acquire()  # as a service does before it listens
    try:
        with pytest.raises(exception.ServiceUnavailable, match="does not answer"):
            make_client(conf)
    finally:
        starting.release()


@requires("qemu-img", "qemu-io")
def test_exporting_a_served_snapshot_keeps_its_export(service, state, tmp_path):
    call(service, "volume_create", size=1, name="v")
    call(service, "snapshot_create", "v", name="s")
    served = call(service, "snapshot_serve", "s")
    client = ServiceClient.connect(os.path.join(state, protocol.SOCKET_NAME))
    try:
        result = client.snapshot_export("s", str(tmp_path / "s.qcow2"), image_format="qcow2")
    finally:
        client.close()
    assert result["format"] == "qcow2" and (tmp_path / "s.qcow2").exists()
    # The session's clean-up runs in the service's thread when the connection ends.
    wait_for(lambda: service.control._connections == set(), "the connection to end")
    assert service.exporter.served(served["export_name"])["uri"] == served["uri"]
