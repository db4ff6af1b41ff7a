"""EVSDriver: Cinder's driver contract over the real local backend."""

import dataclasses
import inspect

import pytest

from evs_driver import exception
from evs_driver.conf import BackendConf
from evs_driver.driver import EVSDriver
from evs_driver.interface import Exporter
from tests.unit.test_conf import make_conf

GiB = 1024**3


@dataclasses.dataclass
class Vol:
    """The fields of a Cinder volume the driver reads."""

    id: str
    size: int


@dataclasses.dataclass
class Snap:
    """The fields of a Cinder snapshot the driver reads."""

    id: str
    volume_id: str
    volume_size: int


class RecordingExporter(Exporter):
    """Test implementation of the exporter seam (the NBD server is another module's job)."""

    def __init__(self):
        self.served = {}

    def export(self, backend, device_id, read_only):
        self.served[device_id] = read_only
        return {"host": "127.0.0.1", "port": 10809, "export_name": device_id}

    def unexport(self, device_id):
        self.served.pop(device_id, None)


def _driver(tmp_path, text="", **kwargs) -> EVSDriver:
    conf = make_conf(tmp_path / "state", text)
    driver = EVSDriver(configuration=BackendConf(conf, "local"), **kwargs)
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


@pytest.fixture
def driver(tmp_path):
    d = _driver(tmp_path)
    yield d
    d.close()


def test_needs_a_configuration():
    with pytest.raises(exception.ConfigError):
        EVSDriver()


def test_unknown_backend_names_volume_backend(tmp_path):
    conf = make_conf(tmp_path / "state", "[local]\nvolume_backend = nosuch\n")
    driver = EVSDriver(configuration=BackendConf(conf, "local"))
    with pytest.raises(exception.ConfigError, match=r"\[local\] volume_backend .*nosuch"):
        driver.do_setup(None)


def test_check_for_setup_error_before_setup(tmp_path):
    conf = make_conf(tmp_path / "state")
    with pytest.raises(exception.BackendError, match="do_setup"):
        EVSDriver(configuration=BackendConf(conf, "local")).check_for_setup_error()


def test_cinder_signatures():
    """The names and arguments a Cinder VolumeDriver subclass forwards to."""
    expected = {
        "create_volume": ["volume"],
        "delete_volume": ["volume"],
        "create_snapshot": ["snapshot"],
        "delete_snapshot": ["snapshot"],
        "create_volume_from_snapshot": ["volume", "snapshot"],
        "create_cloned_volume": ["volume", "src_vref"],
        "revert_to_snapshot": ["context", "volume", "snapshot"],
        "extend_volume": ["volume", "new_size"],
        "get_volume_stats": ["refresh"],
        "create_export": ["context", "volume", "connector"],
        "ensure_export": ["context", "volume"],
        "remove_export": ["context", "volume"],
        "initialize_connection": ["volume", "connector"],
        "terminate_connection": ["volume", "connector", "kwargs"],
        "update_provider_info": ["volumes", "snapshots"],
        "do_setup": ["context"],
        "check_for_setup_error": [],
    }
    for name, args in expected.items():
        params = list(inspect.signature(getattr(EVSDriver, name)).parameters)
        assert params[1:] == args, name
    assert EVSDriver.get_driver_options()


def test_volume_lifecycle_and_idempotent_deletes(driver):
    vol = Vol("11111111-0000-0000-0000-000000000001", 1)
    update = driver.create_volume(vol)
    assert update == {"provider_location": f"local://local/{vol.id}"}
    snap = Snap("22222222-0000-0000-0000-000000000002", vol.id, 1)
    driver.create_snapshot(snap)
    clone = Vol("33333333-0000-0000-0000-000000000003", 2)
    driver.create_volume_from_snapshot(clone, snap)
    copy = Vol("44444444-0000-0000-0000-000000000004", 1)
    driver.create_cloned_volume(copy, vol)
    driver.extend_volume(vol, 3)
    driver.revert_to_snapshot(None, vol, snap)
    assert driver.device_usage(vol).size == 3 * GiB  # revert keeps the size
    assert driver.device_usage(clone).size == 2 * GiB
    driver.delete_snapshot(snap)
    driver.delete_snapshot(snap)  # already gone: fine
    driver.delete_volume(vol)
    driver.delete_volume(vol)
    assert not driver.device_exists(vol)
    assert driver.device_exists(clone) and driver.device_exists(copy)
    assert driver.check().clean


def test_stats_have_exactly_cinders_keys(driver):
    driver.create_volume(Vol("55555555-0000-0000-0000-000000000005", 2))
    stats = driver.get_volume_stats(refresh=True)
    assert set(stats) == {
        "volume_backend_name",
        "vendor_name",
        "driver_version",
        "storage_protocol",
        "total_capacity_gb",
        "free_capacity_gb",
        "provisioned_capacity_gb",
        "max_over_subscription_ratio",
        "reserved_percentage",
        "thin_provisioning_support",
        "thick_provisioning_support",
        "multiattach",
        "online_extend_support",
        "total_volumes",
        "consistent_group_snapshot_enabled",
    }
    assert stats["total_capacity_gb"] == 4.0
    assert stats["provisioned_capacity_gb"] == 2.0
    assert stats["total_volumes"] == 1
    assert stats["thin_provisioning_support"] is True
    assert stats["consistent_group_snapshot_enabled"] is True  # the local engine's
    driver.create_volume(Vol("66666666-0000-0000-0000-000000000006", 1))
    assert driver.get_volume_stats()["total_volumes"] == 1  # cached until refresh
    assert driver.get_volume_stats(refresh=True)["total_volumes"] == 2


def test_stats_report_the_backend_name_and_ratios(tmp_path):
    driver = _driver(
        tmp_path,
        "[local]\nvolume_backend_name = gold\nmax_over_subscription_ratio = 1.5\n"
        "reserved_percentage = 10\n",
    )
    stats = driver.get_volume_stats(refresh=True)
    assert stats["volume_backend_name"] == "gold"
    assert stats["max_over_subscription_ratio"] == 1.5
    assert stats["reserved_percentage"] == 10


def test_attach_without_service_explains(driver):
    vol = Vol("77777777-0000-0000-0000-000000000007", 1)
    driver.create_volume(vol)
    with pytest.raises(exception.AttachNeedsService, match="evs-volume"):
        driver.initialize_connection(vol, {"host": "h"})
    driver.terminate_connection(vol, {"host": "h"})  # nothing served: no error


def test_initialize_connection_through_an_exporter(tmp_path):
    exporter = RecordingExporter()
    driver = _driver(tmp_path, exporter=exporter)
    vol = Vol("88888888-0000-0000-0000-000000000008", 1)
    driver.create_volume(vol)
    info = driver.initialize_connection(vol, {"host": "h"})
    assert info["driver_volume_type"] == "nbd"
    assert info["data"]["export_name"] == vol.id
    assert info["data"]["device"] == vol.id
    assert exporter.served == {vol.id: False}
    driver.terminate_connection(vol, {"host": "h"}, force=True)
    assert exporter.served == {}
    assert driver.update_provider_info([vol], []) == ([], [])
