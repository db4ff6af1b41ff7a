"""The driver's connections through the service's NBD exporter: modes, places, snapshots."""

import os
import shutil
import tempfile

import pytest

from evs_driver import exception
from evs_driver.manager import VolumeManager
from evs_driver.service.exporter import NBDExporter
from tests.functional.nbd.nbd_wire import WireClient
from tests.unit.test_conf import make_conf

READ_ONLY_FLAG = 1 << 1  # NBD_FLAG_READ_ONLY


@pytest.fixture
def setup():
    state = tempfile.mkdtemp(prefix="evsatt-", dir="/tmp")
    exporter = NBDExporter(os.path.join(state, "nbd.sock"))
    manager = VolumeManager(make_conf(state), exporter=exporter)
    yield manager, exporter, state
    exporter.close()
    manager.close()
    shutil.rmtree(state, ignore_errors=True)


def _flags(info: dict) -> int:
    client = WireClient(info["socket"])
    try:
        return client.go(info["export_name"])[1]
    finally:
        client.close()


def test_volume_connection_read_write_and_read_only(setup):
    manager, exporter, state = setup
    volume = manager.create_volume(1, name="v")
    info = manager.attach_volume("v", {"host": "h"})
    assert info["driver_volume_type"] == "nbd"
    data = info["data"]
    assert (data["access_mode"], data["export_name"], data["device"]) == (
        "rw",
        volume.id,
        volume.id,
    )
    assert not _flags(data) & READ_ONLY_FLAG
    manager.detach_volume("v", {})
    assert exporter.exports() == [] and manager.get_volume("v").task is None
    data = manager.attach_volume("v", {"access_mode": "ro"})["data"]
    assert data["access_mode"] == "ro" and _flags(data) & READ_ONLY_FLAG
    manager.detach_volume("v", {})


def test_connection_goes_where_the_connector_asks(setup):
    manager, _exporter, state = setup
    manager.create_volume(1, name="v")
    place = os.path.join(state, "elsewhere.sock")
    data = manager.attach_volume("v", {"nbd_listen": {"socket": place}})["data"]
    assert data["socket"] == place and os.path.exists(place)
    manager.detach_volume("v", {})
    assert not os.path.exists(place)


def test_failed_export_leaves_the_volume_available(setup):
    manager, _exporter, _state = setup
    manager.create_volume(1, name="v")
    with pytest.raises(exception.InvalidInput, match="cannot serve NBD"):
        manager.attach_volume("v", {"nbd_listen": {"socket": "/nonexistent/x.sock"}})
    volume = manager.get_volume("v")
    assert (volume.status, volume.task) == ("available", None)


def test_snapshot_connection_is_read_only_and_ends(setup):
    manager, exporter, _state = setup
    manager.create_volume(1, name="v")
    snapshot = manager.create_snapshot("v", name="s")
    driver = manager.driver_for(snapshot)
    info = driver.initialize_connection_snapshot(snapshot, {})
    assert info["data"]["access_mode"] == "ro" and _flags(info["data"]) & READ_ONLY_FLAG
    driver.terminate_connection_snapshot(snapshot, {})
    assert exporter.served(snapshot.id) is None
