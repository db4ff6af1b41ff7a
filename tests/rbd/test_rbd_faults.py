"""Faults for real: the OSD killed mid-operation, the monitors unreachable at start.

The OSD is stopped with ``kill -9`` through ``tools/ceph-test-cluster osd-stop`` and started
again with ``osd-start``; operations must fail within ``rbd_operation_timeout`` with a clear
error, leave nothing half-made once the cluster is back, and work again.
"""

import socket
import threading
import time
import uuid

import pytest

from evs_driver import exception
from evs_driver.backends.rbd import naming
from tests.conformance.test_backend_contract import data, read, write
from tests.rbd import cephenv
from tests.unit.test_manager_rules import new_manager

MiB = 1 << 20
TIMEOUT = 3


def new_id() -> str:
    return str(uuid.uuid4())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_monitors_mark_the_backend_down_and_the_others_run(tmp_path):
    cephenv.require_cluster()
    conf = tmp_path / "nowhere.conf"
    conf.write_text(f"[global]\nmon_host = 127.0.0.1:{free_port()}\n")  # nothing listens
    ceph = cephenv.settings(rbd_ceph_conf=str(conf), rbd_connect_timeout=2)
    manager = new_manager(tmp_path, cephenv.config_text({"disk": None, "ceph": ceph}))
    try:
        with pytest.raises(exception.BackendUnavailable) as caught:
            manager.create_volume(1, backend="ceph")
        assert "no answer from the Ceph monitors" in caught.value.msg
        assert "rbd_connect_timeout" in caught.value.msg
        assert manager.drivers.unavailable("ceph") is not None
        volume = manager.create_volume(1, backend="disk")  # the other backend runs on
        assert manager.get_volume(volume.id).status == "available"
        stats = manager.pool_stats()
        assert isinstance(stats["ceph"], exception.BackendUnavailable)
        assert stats["disk"]["total_volumes"] == 1
        assert [v.backend for v in manager.list_volumes()] == ["disk"]
    finally:
        manager.close()


@pytest.fixture
def outage_backend():
    """A backend with a short operation timeout; the OSD is always running again after."""
    cephenv.require_cluster()
    instance = cephenv.make_backend(rbd_operation_timeout=TIMEOUT)
    yield instance
    cephenv.cluster_command("osd-start")
    instance.close()


def test_operations_time_out_while_the_osd_is_down_and_leave_nothing_behind(outage_backend):
    backend = outage_backend
    vol, snap, made, new, copy = (new_id() for _ in range(5))
    backend.create_volume(vol, 64 * MiB)
    write(backend, vol, 0, data("before"))
    backend.create_snapshot(vol, snap)
    cephenv.cluster_command("osd-stop")
    attempts = [
        lambda: backend.create_volume(new, 64 * MiB),
        lambda: backend.create_snapshot(vol, new_id()),
        lambda: backend.create_volume_from_snapshot(snap, made, 64 * MiB),
        lambda: write(backend, vol, 0, data("during")),
    ]
    for attempt in attempts:
        with pytest.raises(exception.BackendTimeout) as caught:
            attempt()
        assert f"timed out after {TIMEOUT} s" in caught.value.msg
    cephenv.cluster_command("osd-start")
    backend.check_setup()  # retries the undo steps that failed during the outage
    assert not backend.exists(new)
    assert not backend.exists(made)
    assert read(backend, vol, 0) == data("before")
    assert backend.pool_stats().snapshot_count == 1
    backend.full_copy(snap, copy, 64 * MiB)
    assert read(backend, copy, 0) == data("before")
    assert backend.check().clean


def test_a_copy_cut_off_by_the_osd_going_away_is_removed_when_it_is_back(outage_backend):
    backend = outage_backend
    vol, copy = new_id(), new_id()
    backend.create_volume(vol, 256 * MiB)
    write(backend, vol, 0, b"\x07" * (64 * MiB))
    started, failure = threading.Event(), []

    def progress(done: int, total: int) -> None:
        started.set()

    def copy_it() -> None:
        try:
            backend.full_copy(vol, copy, 256 * MiB, progress)
        except exception.EVSError as exc:
            failure.append(exc)

    worker = threading.Thread(target=copy_it)
    worker.start()
    started.wait(60)
    cephenv.cluster_command("osd-stop")  # mid-copy
    worker.join(120)
    assert not worker.is_alive()
    assert failure and isinstance(failure[0], exception.BackendUnavailable), failure
    cephenv.cluster_command("osd-start")
    # The undo (remove the copy's image, releasing the lock its close could not) is retried
    # with every operation; the closed handle's watch can linger a moment after the OSD is
    # back, and the image cannot go while watched.
    deadline = time.monotonic() + 60
    while backend.images.pending and time.monotonic() < deadline:
        backend.check_setup()
        time.sleep(0.5)
    assert backend.images.pending == []
    assert not backend.exists(copy)
    assert naming.volume(copy) not in backend.images.names()
    assert read(backend, vol, 0) == b"\x07" * 4096
