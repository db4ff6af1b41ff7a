"""Moving a volume and its snapshot between two hosts with the real ``evs`` command.

Host a unmanages (snapshot first, then the volume); host b, configured on a's namespace,
lists the device as manageable, manages the volume and the snapshot under new names and
uses them. Every step is a real ``evs`` process on its own state path and config file.
"""

import pytest

from evs_driver.backends.rbd import naming
from tests.functional.cli.support import env_for, evs, evs_json, one_line_error
from tests.rbd import cephenv


def _host(tmp_path, name: str, backends: dict[str, str]):
    """(state path, config file) of one host with rbd backends (name → namespace)."""
    conf = tmp_path / f"{name}.conf"
    text = cephenv.config_text({b: cephenv.settings(ns) for b, ns in backends.items()})
    conf.write_text(text)
    return tmp_path / name, str(conf)


def _evs_json(host, *args):
    state, conf = host
    return evs_json(state, "--config-file", conf, *args)


def _evs(host, *args):
    state, conf = host
    return evs(state, "--config-file", conf, *args, env=env_for(state))


def test_a_volume_moves_to_another_host_with_its_snapshot(tmp_path):
    cephenv.require_cluster()
    ns_a = cephenv.new_namespace()
    a = _host(tmp_path, "a", {"ceph": ns_a})
    b = _host(tmp_path, "b", {"ceph": cephenv.new_namespace(), "from-a": ns_a})

    volume = _evs_json(a, "volume", "create", "--size", "1", "--name", "moving")
    snapshot = _evs_json(a, "snapshot", "create", "moving", "--name", "s1")
    _evs_json(a, "schedule", "create", "moving", "--every", "1h", "--keep", "2")
    refused = one_line_error(_evs(a, "volume", "unmanage", "moving"))
    assert "unmanage them first" in refused
    assert _evs(a, "snapshot", "unmanage", "s1").returncode == 0
    assert _evs(a, "volume", "unmanage", "moving").returncode == 0
    assert _evs_json(a, "volume", "list") == []
    assert _evs_json(a, "schedule", "list") == []  # a schedule goes with its volume

    offered = _evs_json(b, "volume", "manageable", "--backend", "from-a")
    assert [(e["reference"], e["size"], e["safe_to_manage"]) for e in offered] == [
        (naming.volume(volume["id"]), 1, True)
    ]
    moved = _evs_json(
        b, "volume", "manage", naming.volume(volume["id"]), "--backend", "from-a", "--name", "moved"
    )
    assert (moved["status"], moved["size"], moved["backend"]) == ("available", 1, "from-a")
    snap = _evs_json(b, "snapshot", "manage", "moved", naming.snapshot(snapshot["id"]))
    assert (snap["volume_id"], snap["status"]) == (moved["id"], "available")
    clone = _evs_json(b, "volume", "create", "--snapshot", snap["id"], "--name", "clone")
    assert clone["status"] == "available"
    assert _evs_json(b, "pool", "check")  # runs and reports; problems would exit non-zero
    missing = one_line_error(_evs(b, "volume", "manage", "no-such-image", "--backend", "from-a"))
    assert "no-such-image" in missing


@pytest.mark.parametrize("reference", ["", "volume-x/../../y"])
def test_a_bad_reference_is_refused_and_adds_nothing(tmp_path, reference):
    cephenv.require_cluster()
    a = _host(tmp_path, "a", {"ceph": cephenv.new_namespace()})
    assert one_line_error(_evs(a, "volume", "manage", reference))
    assert _evs_json(a, "volume", "list") == []
