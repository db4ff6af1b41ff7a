"""Two volume managers ("hosts") on two state paths sharing one Ceph pool.

Each has its own namespace and sees only its own volumes; working on both at once never
mixes them up; and a volume with its snapshots moves from one host to the other by
unmanage on the first and manage on the second (configured on the first one's namespace).
"""

import threading

import pytest

from evs_driver import exception
from evs_driver.backends.rbd import naming
from tests.rbd import cephenv
from tests.unit.test_manager_rules import new_manager, read, write

GiB = 1024**3


def host(tmp_path, name: str, backends: dict[str, str]):
    """A manager on ``tmp_path/name`` with one rbd backend per (backend name → namespace)."""
    text = cephenv.config_text({b: cephenv.settings(ns) for b, ns in backends.items()})
    (tmp_path / name).mkdir()
    return new_manager(tmp_path / name, text)


@pytest.fixture
def namespaces():
    cephenv.require_cluster()
    return cephenv.new_namespace(), cephenv.new_namespace()


def test_each_host_sees_only_its_own_volumes(tmp_path, namespaces):
    ns_a, ns_b = namespaces
    a, b = host(tmp_path, "a", {"ceph": ns_a}), host(tmp_path, "b", {"ceph": ns_b})
    try:
        va = a.create_volume(1, name="same-name")
        vb = b.create_volume(1, name="same-name")
        a.create_snapshot(va.id)
        assert [v.id for v in a.list_volumes()] == [va.id]
        assert a.pool_stats()["ceph"]["total_volumes"] == 1
        assert b.pool_stats()["ceph"]["total_volumes"] == 1
        assert a.check() == {"ceph": []} and b.check() == {"ceph": []}
        assert not b.drivers["ceph"].device_exists(va)
        assert b.manageable_volumes("ceph")[0]["reference"] == {"source-name": vb.name}
    finally:
        a.close()
        b.close()


def _churn(manager, tag: bytes, rounds: int, failures: list) -> None:
    """Create, write, snapshot, clone, revert and delete, checking every byte read back."""
    try:
        for i in range(rounds):
            vol = manager.create_volume(1, name=f"v{i}")
            write(manager, vol.id, 0, tag * 4096)
            snap = manager.create_snapshot(vol.id)
            write(manager, vol.id, 0, b"x" * 4096)
            clone = manager.create_volume(snapshot=snap.id)
            manager.revert_volume(vol.id, snap.id)
            assert read(manager, "volume", vol.id, 0, 4096) == tag * 4096
            assert read(manager, "volume", clone.id, 0, 4096) == tag * 4096
            manager.delete_volume(clone.id)
            manager.delete_volume(vol.id, cascade=True)
    except Exception as exc:  # reported by the test thread below
        failures.append(exc)


def test_both_hosts_working_at_once_never_interfere(tmp_path, namespaces):
    ns_a, ns_b = namespaces
    a, b = host(tmp_path, "a", {"ceph": ns_a}), host(tmp_path, "b", {"ceph": ns_b})
    try:
        failures: list = []
        workers = [
            threading.Thread(target=_churn, args=(a, b"A", 4, failures)),
            threading.Thread(target=_churn, args=(b, b"B", 4, failures)),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(600)
        assert not failures, failures
        for m in (a, b):
            assert m.list_volumes() == []
            assert m.check() == {"ceph": []}
            m.drivers["ceph"].collect()
            assert m.drivers["ceph"].backend.images.names() == []
    finally:
        a.close()
        b.close()


def test_a_volume_and_its_snapshots_move_to_another_host(tmp_path, namespaces):
    ns_a, ns_b = namespaces
    a = host(tmp_path, "a", {"ceph": ns_a})
    b = host(tmp_path, "b", {"ceph": ns_b, "from-a": ns_a})  # b takes over a's namespace
    try:
        vol = a.create_volume(1, name="moving")
        write(a, vol.id, 0, b"1" * 4096)
        s1 = a.create_snapshot(vol.id, name="s1")
        write(a, vol.id, 0, b"2" * 4096)
        a.revert_volume(vol.id, s1.id)  # s1 now lives on a held image
        write(a, vol.id, 0, b"3" * 4096)
        with pytest.raises(exception.InvalidOperation, match="unmanage them first"):
            a.unmanage_volume(vol.id)
        a.unmanage_snapshot(s1.id)
        a.unmanage_volume(vol.id)
        assert a.list_volumes() == []

        offered = b.manageable_volumes("from-a")
        assert [e["reference"] for e in offered] == [{"source-name": naming.volume(vol.id)}]
        assert offered[0]["safe_to_manage"] and offered[0]["size"] == 1
        moved = b.manage_volume("from-a", {"source-name": naming.volume(vol.id)}, "moved")
        snap = b.manage_snapshot(moved.id, {"source-name": naming.snapshot(s1.id)}, "s1")
        assert (moved.size, b.get_volume("moved").status) == (1, "available")
        assert read(b, "volume", moved.id, 0, 4096) == b"3" * 4096
        b.revert_volume(moved.id, snap.id)
        assert read(b, "volume", moved.id, 0, 4096) == b"1" * 4096
        assert b.check() == {"ceph": [], "from-a": []}
        b.delete_volume(moved.id, cascade=True)
        b.drivers["from-a"].collect()
        assert b.drivers["from-a"].backend.images.names() == []
    finally:
        a.close()
        b.close()


def test_an_image_made_outside_evs_is_managed_rounded_up_to_a_whole_gib(tmp_path, namespaces):
    ns_a, _ = namespaces
    a = host(tmp_path, "a", {"ceph": ns_a})
    try:
        backend = a.drivers["ceph"].backend
        rbd = backend.cluster.rbd
        rbd.RBD().create(backend.cluster.ioctx, "made-by-hand", 3 * GiB // 2)
        with rbd.Image(backend.cluster.ioctx, "made-by-hand") as img:
            img.write(b"h" * 4096, 0)
            img.create_snap("before-evs")
            busy = a.manageable_volumes("ceph")[0]
            assert not busy["safe_to_manage"] and "open by 1 client" in busy["reason_not_safe"]
        with pytest.raises(exception.InvalidReference, match="give source-name"):
            a.manage_volume("ceph", {"name": "made-by-hand"})
        with pytest.raises(exception.InvalidReference, match="no such image"):
            a.manage_volume("ceph", {"source-name": "missing"})
        vol = a.manage_volume("ceph", {"source-name": "made-by-hand"})
        assert vol.size == 2
        assert a.drivers["ceph"].device_usage(vol).size == 2 * GiB
        snap = a.manage_snapshot(vol.id, {"source-name": "before-evs"})
        write(a, vol.id, 0, b"e" * 4096)
        a.revert_volume(vol.id, snap.id)
        assert read(a, "volume", vol.id, 0, 4096) == b"h" * 4096
        assert a.check() == {"ceph": []}
    finally:
        a.close()
