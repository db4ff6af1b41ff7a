"""``evs volume attach / detach`` and ``evs export list`` against a running ``evs-volume``."""

import json
import subprocess
import sys

from tests.functional.attach import hostenv


def evs(services, *args: str) -> subprocess.CompletedProcess:
    """The real ``evs`` command with the service's config file."""
    return subprocess.run(
        [sys.executable, "-m", "evs_driver.cmd.evs", "--config-file", services.config, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def evs_json(services, *args: str):
    result = evs(services, *args, "-f", "json")
    assert result.returncode == 0, result.stderr + services.log_tail()
    return json.loads(result.stdout)


def test_attach_list_and_detach_through_the_service(attach_host, services):
    services.start_child()
    volume = evs_json(services, "volume", "create", "--size", "1", "--backend", "local")["id"]
    info = evs_json(services, "volume", "attach", volume, "--protocol", "iscsi")
    assert info["driver_volume_type"] == "iscsi"
    assert info["auth_method"] == "CHAP" and info["target_lun"] == 0
    again = evs_json(services, "volume", "attach", volume, "--protocol", "iscsi")
    assert again == info, "attaching the same initiator again changed the connection info"
    shown = evs_json(services, "volume", "show", volume)
    assert shown["status"] == "in-use"
    assert shown["attachments"] == [f"iscsi {hostenv.HOST_IQN}"]
    rows = [r for r in evs_json(services, "export", "list") if r.get("volume") == volume]
    protocols = {r["protocol"]: r for r in rows}
    assert protocols["nbd"]["state"] == "connected"
    assert protocols["iscsi"]["initiators"] == [hostenv.HOST_IQN]
    assert protocols["iscsi"]["device"] == protocols["nbd"]["device"]
    table = evs(services, "export", "list")
    assert table.returncode == 0 and info["target_iqn"] in table.stdout
    detached = evs_json(services, "volume", "detach", volume, "--initiator", hostenv.HOST_IQN)
    assert detached == {
        "volume": volume,
        "detached": [f"iscsi {hostenv.HOST_IQN}"],
        "status": "available",
    }
    assert not [r for r in evs_json(services, "export", "list") if r.get("volume") == volume]
    bad = evs(services, "volume", "attach", volume, "--initiator", "iqn.2026-13.bad:x")
    assert bad.returncode == 1 and "iSCSI qualified name" in bad.stderr
    assert evs_json(services, "volume", "show", volume)["status"] == "available"
