"""What the rbd backend does in Ceph itself, beyond the shared conformance suite."""

import json
import time
import uuid

import pytest

from evs_driver import exception
from evs_driver.backends.rbd import naming
from evs_driver.backends.rbd.naming import SnapshotRef
from tests.conformance.test_backend_contract import ZERO, data, read, write
from tests.rbd import cephenv
from tests.unit.test_manager_rules import new_manager

MiB = 1 << 20
SIZE = 16 * MiB
OBJECT = 4 * MiB


def new_id() -> str:
    return str(uuid.uuid4())


def image(backend, name: str, **kwargs):
    return backend.cluster.rbd.Image(backend.cluster.ioctx, name, **kwargs)


def snaps_of(backend, name: str) -> list[dict]:
    with image(backend, name, read_only=True) as img:
        return list(img.list_snaps())


def names(backend) -> list[str]:
    return sorted(backend.images.names())


def test_volume_from_snapshot_is_a_clone_v2_child_of_an_unprotected_snapshot(backend):
    vol, snap, made = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    backend.create_snapshot(vol, snap)
    backend.create_volume_from_snapshot(snap, made, SIZE)
    with image(backend, naming.volume(vol), read_only=True) as parent:
        assert not parent.is_protected_snap(naming.snapshot(snap))
    with image(backend, naming.volume(made), read_only=True) as child:
        spec = child.get_parent_image_spec()
        assert child.op_features() & backend.cluster.rbd.RBD_OPERATION_FEATURE_CLONE_CHILD
    assert (spec["image_name"], spec["snap_name"]) == (naming.volume(vol), naming.snapshot(snap))
    assert spec["pool_namespace"] == backend.cluster.namespace


def test_deleting_a_snapshot_with_clones_trashes_it_until_the_last_clone_goes(backend):
    vol, snap, made = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("base"))
    backend.create_snapshot(vol, snap)
    backend.create_volume_from_snapshot(snap, made, SIZE)
    backend.delete_snapshot(snap)  # no flatten: the snapshot waits in the trash namespace
    (trashed,) = snaps_of(backend, naming.volume(vol))
    assert trashed["namespace"] == backend.cluster.rbd.RBD_SNAP_NAMESPACE_TYPE_TRASH
    assert trashed["trash"]["original_name"] == naming.snapshot(snap)
    assert not backend.exists(snap)
    assert read(backend, made, 0) == data("base")
    backend.delete_volume(made)
    backend.collect()
    assert snaps_of(backend, naming.volume(vol)) == []


def test_a_clone_of_a_volume_hangs_from_a_trashed_helper_snapshot(backend):
    src, clone = new_id(), new_id()
    backend.create_volume(src, SIZE)
    backend.clone_volume(src, clone, 2 * SIZE)
    (helper,) = snaps_of(backend, naming.volume(src))
    assert helper["trash"]["original_name"] == naming.clone_snap(clone)
    assert backend.pool_stats().snapshot_count == 0
    backend.delete_volume(clone)
    backend.collect()
    assert snaps_of(backend, naming.volume(src)) == []


def test_a_cluster_that_needs_snapshot_protection_is_refused_with_the_fix(admin):
    admin("ceph", "osd", "set-require-min-compat-client", "luminous", "--yes-i-really-mean-it")
    try:
        with pytest.raises(exception.ConfigError) as caught:
            cephenv.make_backend()
    finally:
        admin("ceph", "osd", "set-require-min-compat-client", "mimic")
    message = caught.value.msg
    assert "require_min_compat_client is luminous" in message
    assert "ceph osd set-require-min-compat-client mimic" in message
    assert "\n" not in message


@pytest.mark.parametrize("method", ["clone", "rollback"])
def test_each_revert_method_keeps_every_snapshot_and_the_size(method):
    cephenv.require_cluster()
    backend = cephenv.make_backend(rbd_revert_method=method)
    try:
        vol, s1, s2 = new_id(), new_id(), new_id()
        backend.create_volume(vol, SIZE)
        write(backend, vol, 0, data("one"))
        backend.create_snapshot(vol, s1)
        write(backend, vol, 0, data("two"))
        backend.create_snapshot(vol, s2)
        backend.extend_volume(vol, 2 * SIZE)
        write(backend, vol, SIZE, data("past"))
        with image(backend, naming.volume(vol), read_only=True) as img:
            first_id = img.id()
        backend.revert_to_snapshot(vol, s1)
        assert read(backend, vol, 0) == data("one")
        assert read(backend, vol, SIZE) == ZERO
        assert read(backend, s2, 0) == data("two")
        with image(backend, naming.volume(vol), read_only=True) as img:
            assert img.size() == 2 * SIZE
            replaced = img.id() != first_id
        assert replaced == (method == "clone")
        backend.revert_to_snapshot(vol, s2)
        assert read(backend, vol, 0) == data("two")
        assert backend.check().clean
    finally:
        backend.close()


def test_snapshots_on_retired_images_go_with_their_last_snapshot(backend):
    vol, s1 = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("kept"))
    backend.create_snapshot(vol, s1)
    backend.revert_to_snapshot(vol, s1)  # the old image is held for s1
    (held,) = [n for n in names(backend) if n.startswith(naming.HELD_PREFIX)]
    assert read(backend, s1, 0) == data("kept")
    backend.delete_volume(vol)  # the reverted image hangs from s1: held too
    backend.delete_snapshot(s1)
    backend.collect()
    assert names(backend) == []
    assert backend.index.all() == {}
    assert held  # it existed while s1 needed it


def test_an_interrupted_revert_is_undone_before_the_swap_and_finished_after(backend):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("old"))
    backend.create_snapshot(vol, snap)
    write(backend, vol, 0, data("new"))
    parent = naming.volume(vol)
    temp = naming.revert_temp(vol)
    # Stopped after step 1 (the clone exists, the volume untouched): undone.
    backend.lineage.clone(parent, naming.snapshot(snap), temp, SIZE, SIZE)
    assert not backend.check().clean
    backend.recover()
    assert temp not in names(backend)
    assert read(backend, vol, 0) == data("new")
    # Stopped after step 2 (the volume's image retired): finished.
    backend.lineage.clone(parent, naming.snapshot(snap), temp, SIZE, SIZE)
    with image(backend, parent, read_only=True) as img:
        backend.images.retire(img, parent)
    assert not backend.exists(vol)
    backend.recover()
    assert read(backend, vol, 0) == data("old")
    assert read(backend, snap, 0) == data("old")
    assert backend.check().clean


def test_exclusive_bytes_are_the_object_versions_only_that_snapshot_holds(backend):
    vol, s1, s2 = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("a1"))  # object 0
    write(backend, vol, OBJECT, data("b"))  # object 1, never rewritten: shared by all
    backend.create_snapshot(vol, s1)
    write(backend, vol, 0, data("a2"))
    backend.create_snapshot(vol, s2)
    write(backend, vol, 0, data("a3"))
    usage = {dev: backend.device_usage(dev) for dev in (s1, s2, vol)}
    assert [usage[d].exclusive_bytes for d in (s1, s2, vol)] == [OBJECT, OBJECT, OBJECT]
    assert [usage[d].mapped_bytes for d in (s1, s2, vol)] == [2 * OBJECT] * 3
    backend.delete_snapshot(s1)
    assert backend.device_usage(s2).exclusive_bytes == OBJECT


def test_a_pool_quota_bounds_total_and_free_capacity(backend, admin):
    quota = 8 * 1024**3
    admin("ceph", "osd", "pool", "set-quota", backend.cluster.pool, "max_bytes", str(quota))
    try:
        stats = backend.pool_stats()
    finally:
        admin("ceph", "osd", "pool", "set-quota", backend.cluster.pool, "max_bytes", "0")
    assert stats.total_bytes == quota
    assert 0 < stats.free_bytes <= quota
    assert backend.pool_stats().total_bytes > quota  # the whole cluster's share again


def test_connection_info_has_the_shape_of_cinders_rbd_driver(backend, admin):
    vol = new_id()
    backend.create_volume(vol, SIZE)
    info = backend.connection_properties(vol)
    mons = json.loads(admin("ceph", "mon", "dump", "-f", "json"))["mons"]
    assert [f"{h}:{p}" for h, p in zip(info["hosts"], info["ports"], strict=True)] == [
        m["addr"].rsplit("/", 1)[0] for m in mons
    ]
    assert info["name"] == f"{backend.cluster.pool}/{backend.cluster.namespace}/volume-{vol}"
    assert info["namespace"] == backend.cluster.namespace
    assert info["auth_enabled"] and info["auth_username"] == backend.conf.rbd_user
    assert (info["cluster_name"], info["secret_type"], info["volume_id"]) == ("ceph", "ceph", vol)
    assert info["discard"] is True
    with pytest.raises(exception.NotFound):
        backend.connection_properties(new_id())


def test_check_reports_an_index_entry_whose_snapshot_is_gone(backend):
    vol, ghost = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    with image(backend, naming.volume(vol), read_only=True) as img:
        backend.index.put(SnapshotRef(ghost, img.id(), vol))  # a crash before create_snap
    report = backend.check()
    assert any(ghost in problem for problem in report.problems)
    assert not backend.exists(ghost)
    backend.delete_snapshot(ghost)
    assert backend.check().clean


def test_a_clone_deeper_than_the_limit_is_flattened_in_the_background():
    cephenv.require_cluster()
    backend = cephenv.make_backend(rbd_max_clone_depth=1)
    try:
        vol, snap, mid, mid_snap, deep = new_id(), new_id(), new_id(), new_id(), new_id()
        backend.create_volume(vol, SIZE)
        write(backend, vol, 0, data("root"))
        backend.create_snapshot(vol, snap)
        backend.create_volume_from_snapshot(snap, mid, SIZE)
        backend.create_snapshot(mid, mid_snap)
        backend.create_volume_from_snapshot(mid_snap, deep, SIZE)  # two levels: flattened
        deadline = time.monotonic() + 120  # a bound on the manager's background task
        while backend.lineage.depth(naming.volume(deep)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert backend.lineage.depth(naming.volume(deep)) == 0
        assert backend.lineage.depth(naming.volume(mid)) == 1
        assert read(backend, deep, 0) == data("root")
    finally:
        backend.close()


def test_the_driver_gives_rbd_connection_info_unless_nbd_is_asked_for(tmp_path):
    cephenv.require_cluster()
    manager = new_manager(tmp_path, cephenv.config_text({"ceph": cephenv.settings()}))
    try:
        driver = manager.drivers["ceph"]
        vol = manager.create_volume(1)
        info = driver.initialize_connection(vol, {"host": "compute-1", "initiator": "iqn.x"})
        assert info["driver_volume_type"] == "rbd"
        assert info["data"]["name"].endswith("/" + vol.name)
        assert info["data"]["access_mode"] == "rw"
        assert driver.get_volume_stats(refresh=True)["storage_protocol"] == "ceph"
        with pytest.raises(exception.AttachNeedsService):  # NBD needs the running service
            driver.initialize_connection(vol, {"host": "compute-1", "protocol": "nbd"})
    finally:
        manager.close()
