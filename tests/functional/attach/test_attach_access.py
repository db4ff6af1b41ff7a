"""Who gets in: CHAP, per-initiator ACLs and host NQN allow-lists, idempotent attaches.

Initiators here are open-iscsi (one iface per initiator name) and nvme-cli, so two
initiators on one host can be told apart; nothing is exported to everyone.
"""

import pytest

from evs_driver import exception
from tests.functional.attach import hostenv

IQN_A = "iqn.2026-01.org.evs-tests:initiator-a"
IQN_B = "iqn.2026-01.org.evs-tests:initiator-b"
NQN_A = "nqn.2026-01.org.evs-tests:host-a"
NQN_B = "nqn.2026-01.org.evs-tests:host-b"


def _shared_volume(service, backend="local"):
    return service.request(
        "volume_create", size=1, backend=backend, metadata={"multiattach": "true"}
    )["id"]


def test_iscsi_chap_and_terminate_lock_out_exactly_one_initiator(attach_host, service):
    manager = service.manager
    volume = _shared_volume(service)
    info_a = manager.attach_volume(volume, {"protocol": "iscsi", "initiator": IQN_A})
    info_b = manager.attach_volume(volume, {"protocol": "iscsi", "initiator": IQN_B})
    data = info_a["data"]
    assert data == {**info_b["data"]}, "one target and one CHAP secret per volume"
    ip, port = data["target_portal"].rsplit(":", 1)
    user, password = data["auth_username"], data["auth_password"]

    with hostenv.iscsi_session(ip, port, data["target_iqn"], IQN_A, user, "wrong" * 4) as login:
        assert login.returncode != 0, "a wrong CHAP password logged in"
        assert "authoriz" in (login.stdout + login.stderr).lower()
    with hostenv.iscsi_session(
        ip, port, data["target_iqn"], "iqn.2026-01.org.evs-tests:c", user, password
    ) as login:
        assert login.returncode != 0, "an initiator with no ACL logged in"

    with (
        hostenv.iscsi_session(ip, port, data["target_iqn"], IQN_A, user, password) as login_a,
        hostenv.iscsi_session(ip, port, data["target_iqn"], IQN_B, user, password) as login_b,
    ):
        assert login_a.returncode == 0, login_a.stderr
        assert login_b.returncode == 0, login_b.stderr
        disk_b = hostenv.wait_for(lambda: hostenv.session_disk(IQN_B), 30, "B's disk")
        manager.detach_volume(volume, {"protocol": "iscsi", "initiator": IQN_A})
        assert manager.get_volume(volume).status == "in-use"
        hostenv.write_bytes(disk_b, 0, b"B" * 4096)
        assert hostenv.read_bytes(disk_b, 0, 4096) == b"B" * 4096
        rows = [r for r in service.manager.block_exports() if r["protocol"] == "iscsi"]
        assert [r["initiators"] for r in rows] == [[IQN_B]]
    with hostenv.iscsi_session(ip, port, data["target_iqn"], IQN_A, user, password) as login:
        assert login.returncode != 0, "initiator A logged in again after its terminate"
    manager.detach_volume(volume, {})
    assert manager.get_volume(volume).status == "available"


def test_nvme_host_allow_list_and_terminate(attach_host, service):
    manager = service.manager
    volume = _shared_volume(service, backend="thin")
    info = manager.attach_volume(volume, {"protocol": "nvmeof", "nqn": NQN_A})
    manager.attach_volume(volume, {"protocol": "nvmeof", "nqn": NQN_B})
    nqn = info["data"]["target_nqn"]
    try:
        refused = hostenv.nvme_connect(nqn, "nqn.2026-01.org.evs-tests:host-c")
        assert refused.returncode != 0, "a host NQN not on the allow-list connected"
        manager.detach_volume(volume, {"protocol": "nvmeof", "nqn": NQN_A})
        refused = hostenv.nvme_connect(nqn, NQN_A)
        assert refused.returncode != 0, "host A connected after its terminate"
        allowed = hostenv.nvme_connect(nqn, NQN_B)
        assert allowed.returncode == 0, allowed.stderr
    finally:
        hostenv.nvme_disconnect(nqn)
    manager.detach_volume(volume, {})


@pytest.mark.parametrize("protocol", ["iscsi", "nvmeof", "local"])
def test_attaching_again_to_the_same_initiator_is_idempotent(attach_host, service, protocol):
    manager = service.manager
    volume = service.request("volume_create", size=1, backend="local")["id"]
    connector = dict(attach_host["properties"], protocol=protocol)
    first = manager.attach_volume(volume, connector)
    again = manager.attach_volume(volume, connector)
    assert first == again
    rows = [r for r in service.manager.block_exports() if r["volume"] == volume]
    assert len([r for r in rows if r["protocol"] == "nbd"]) == 1, rows
    if protocol != "local":
        (target,) = [r for r in rows if r["protocol"] == protocol]
        assert len(target["initiators"]) == 1, target
    manager.detach_volume(volume, {})
    assert not [r for r in service.manager.block_exports() if r["volume"] == volume]


def test_a_second_initiator_needs_a_multiattach_volume(attach_host, service):
    manager = service.manager
    volume = service.request("volume_create", size=1, backend="thin")["id"]
    manager.attach_volume(volume, {"protocol": "iscsi", "initiator": IQN_A})
    with pytest.raises(exception.InvalidOperation, match="multiattach"):
        manager.attach_volume(volume, {"protocol": "iscsi", "initiator": IQN_B})
    rows = [r for r in service.manager.block_exports() if r["volume"] == volume]
    assert [r["initiators"] for r in rows] == [[IQN_A]]
    manager.detach_volume(volume, {})
