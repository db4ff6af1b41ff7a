"""NBD export names: a device is reachable by its id and by its name, unless the name is shared.

The manager decides (it sees the catalog), the exporter serves the name as an alias.
"""

import os
import shutil
import tempfile

import pytest

from evs_driver import exception
from evs_driver.manager import VolumeManager
from evs_driver.service.exporter import NBDExporter
from tests.functional.nbd.nbd_wire import OPT_GO, REP_ACK, REP_ERR_UNKNOWN, WireClient
from tests.unit.test_conf import make_conf


@pytest.fixture
def setup():
    state = tempfile.mkdtemp(prefix="evsname-", dir="/tmp")  # unix socket paths are short
    exporter = NBDExporter(os.path.join(state, "nbd.sock"))
    manager = VolumeManager(make_conf(state), exporter=exporter)
    yield manager, exporter
    exporter.close()
    manager.close()
    shutil.rmtree(state, ignore_errors=True)


def reachable(info: dict, name: str) -> bool:
    """True when a client asking for ``name`` gets the export (NBD_OPT_GO)."""
    client = WireClient(info["socket"])
    try:
        client.greeting()
        final = client.info_request(OPT_GO, name)[-1][0]
        assert final in (REP_ACK, REP_ERR_UNKNOWN), final
        return final == REP_ACK
    finally:
        client.close()


def test_volume_is_reachable_by_id_and_name_and_listed_with_it(setup):
    manager, exporter = setup
    volume = manager.create_volume(1, name="db")
    data = manager.attach_volume(volume.id, {})["data"]
    assert data["name"] == "db" and data["export_name"] == volume.id
    assert reachable(data, volume.id) and reachable(data, "db")
    assert [(e["export_name"], e["name"]) for e in exporter.exports()] == [(volume.id, "db")]
    manager.detach_volume("db", {})
    assert exporter.exports() == []


def test_snapshot_is_reachable_by_its_name(setup):
    manager, exporter = setup
    manager.create_volume(1, name="v")
    snapshot = manager.create_snapshot("v", name="before-upgrade")
    connector = manager.nbd_connector(snapshot, "before-upgrade", {})
    assert connector == {"nbd_name": "before-upgrade"}
    data = manager.driver_for(snapshot).initialize_connection_snapshot(snapshot, connector)["data"]
    assert reachable(data, "before-upgrade") and reachable(data, snapshot.id)


def test_unnamed_volume_is_served_by_id_only(setup):
    manager, _exporter = setup
    volume = manager.create_volume(1)
    data = manager.attach_volume(volume.id, {})["data"]
    assert data["name"] is None and reachable(data, volume.id)


def test_name_shared_by_two_volumes_is_refused_by_name_not_by_id(setup):
    manager, exporter = setup
    first = manager.create_volume(1, name="dup")
    manager.create_volume(1, name="dup")
    with pytest.raises(exception.AmbiguousName):
        manager.attach_volume("dup", {})
    data = manager.attach_volume(first.id, {})["data"]
    assert data["name"] is None  # served, but "dup" could mean either
    assert reachable(data, first.id) and not reachable(data, "dup")


def test_volume_name_that_is_also_a_snapshot_name_is_refused_by_name(setup):
    manager, exporter = setup
    volume = manager.create_volume(1, name="x")
    other = manager.create_volume(1, name="y")
    manager.create_snapshot("y", name="x")
    with pytest.raises(
        exception.AmbiguousExportName, match=f"x cannot be an NBD export name.*{volume.id}"
    ):
        manager.attach_volume("x", {})
    assert manager.get_volume("x").status == "available"  # the refusal changed nothing
    assert exporter.exports() == []
    assert manager.attach_volume(volume.id, {})["data"]["name"] is None
    assert manager.attach_volume(other.id, {})["data"]["name"] == "y"


def test_name_equal_to_another_devices_id_is_not_exported(setup):
    """Names shaped like ids are refused at create now; older catalogs may hold them."""
    manager, _exporter = setup
    target = manager.create_volume(1, name="t")
    legacy = manager.create_volume(1, name="legacy")
    with manager.catalog.transaction() as txn:
        txn.set_fields(txn.volume(legacy.id), display_name=target.id)
    data = manager.attach_volume(legacy.id, {})["data"]
    assert data["name"] is None and reachable(data, legacy.id)
    assert manager.attach_volume(target.id, {})["data"]["name"] == "t"
    client = WireClient(data["socket"])
    client.go(target.id)  # the id still means the device it belongs to
    client.close()
