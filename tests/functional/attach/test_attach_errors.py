"""Bad attach requests: one clear error each, and nothing half-made left behind.

"Nothing left" is checked where it would be: the catalog (no attachment, the volume
available), the kernel's NBD devices, LIO's targets and nvmet's subsystems.
"""

import os

import pytest

from evs_driver import exception
from tests.functional.attach import hostenv

NVMET_TCP = "/lib/modules/evs/nvmet-tcp.ko"


def _nothing_left(service, volume_id: str) -> None:
    manager = service.manager
    assert manager.get_volume(volume_id).status == "available"
    with manager.catalog.transaction() as txn:
        assert txn.attachments(volume_id) == []
    rows = manager.block_exports()
    assert not [r for r in rows if r["volume"] == volume_id], rows
    assert service.exporter.served(volume_id) is None


@pytest.mark.parametrize(
    "connector, error, message",
    [
        (
            {"protocol": "fibre", "initiator": "iqn.2026-01.org.x:y"},
            exception.UnknownProtocol,
            "Unknown attach protocol 'fibre'",
        ),
        (
            {"protocol": "iscsi", "initiator": "not-an-iqn"},
            exception.InvalidInitiator,
            "iSCSI qualified name",
        ),
        (
            {"protocol": "iscsi", "initiator": "iqn.2026-13.org.x:y"},
            exception.InvalidInitiator,
            "iSCSI qualified name",
        ),
        (
            {"protocol": "nvmeof", "nqn": "iqn.2026-01.org.x:y"},
            exception.InvalidInitiator,
            "NVMe qualified name",
        ),
        (
            {"protocol": "nvmeof", "nqn": "nqn.2026-01.org.x:" + "h" * 250},
            exception.InvalidInitiator,
            "NVMe qualified name",
        ),
        ({"protocol": "iscsi"}, exception.InvalidInput, "needs the initiator's name"),
        (
            {"protocol": "local", "host": "some-other-host"},
            exception.InvalidInput,
            "not on some-other-host",
        ),
    ],
)
def test_bad_attach_requests_fail_clearly_and_make_nothing(
    attach_host, service, connector, error, message
):
    volume = service.request("volume_create", size=1, backend="local")["id"]
    with pytest.raises(error, match=message):
        service.manager.attach_volume(volume, connector)
    _nothing_left(service, volume)


def test_no_free_nbd_device_fails_and_leaves_nothing(attach_host, services):
    services.configure(nbd_max_devices=1)
    service = services.start()
    manager = service.manager
    first = service.request("volume_create", size=1, backend="local")["id"]
    second = service.request("volume_create", size=1, backend="local")["id"]
    manager.attach_volume(first, {"protocol": "local"})
    with pytest.raises(exception.NoFreeDevice, match="nbd_max_devices = 1"):
        manager.attach_volume(second, {"protocol": "iscsi", "initiator": hostenv.HOST_IQN})
    _nothing_left(service, second)
    with pytest.raises(exception.NoFreeDevice):
        manager.attach_volume(second, {"protocol": "local"})
    _nothing_left(service, second)
    manager.detach_volume(first, {})
    manager.attach_volume(second, {"protocol": "local"})  # the device is free again
    manager.detach_volume(second, {})


def test_a_missing_target_module_fails_clearly_and_leaves_nothing(attach_host, service):
    volume = service.request("volume_create", size=1, backend="local")["id"]
    hostenv.run("rmmod", "nvmet_tcp")
    try:
        with pytest.raises(exception.TargetModuleMissing, match="nvmet_tcp"):
            service.manager.attach_volume(volume, {"protocol": "nvmeof", "nqn": hostenv.host_nqn()})
        _nothing_left(service, volume)
    finally:
        hostenv.run("insmod", NVMET_TCP)
    assert os.path.isdir("/sys/module/nvmet_tcp")
    service.manager.attach_volume(volume, {"protocol": "nvmeof", "nqn": hostenv.host_nqn()})
    service.manager.detach_volume(volume, {})
    _nothing_left(service, volume)


def test_detaching_an_initiator_that_has_no_attachment_names_the_ones_there(attach_host, service):
    volume = service.request("volume_create", size=1, backend="thin")["id"]
    service.manager.attach_volume(volume, {"protocol": "iscsi", "initiator": hostenv.HOST_IQN})
    with pytest.raises(exception.NotFound, match=hostenv.HOST_IQN):
        service.manager.detach_volume(volume, {"protocol": "iscsi", "initiator": "iqn.2026-01.a:b"})
    service.manager.detach_volume(volume, {})
    _nothing_left(service, volume)
