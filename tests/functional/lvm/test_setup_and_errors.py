"""Setup, bad input and failed operations on real LVM: clear errors, nothing changed."""

import pytest

from evs_driver import exception
from tests.lvm_guest import guestenv

pytestmark = pytest.mark.skipif(not guestenv.in_guest(), reason=guestenv.SKIP_REASON)

MiB = 1 << 20


def test_missing_volume_group_is_a_config_error():
    backend = guestenv.make_backend("no-such-vg", "pool", lvm_create_thin_pool=True)
    with pytest.raises(exception.ConfigError, match="lvm_volume_group.*no-such-vg not found"):
        backend.setup()


def test_missing_pool_without_create_is_a_config_error(lvm_vg):
    before = guestenv.lv_names(lvm_vg)
    backend = guestenv.make_backend(lvm_vg, "absent-pool")
    with pytest.raises(exception.ConfigError, match="lvm_create_thin_pool is false"):
        backend.setup()
    assert guestenv.lv_names(lvm_vg) == before


def test_pool_that_is_not_a_thin_pool_is_a_config_error(lvm_vg):
    guestenv.lvm("lvcreate", "-q", "-y", "-L", "4m", "-n", "plain", lvm_vg)
    try:
        backend = guestenv.make_backend(lvm_vg, "plain")
        with pytest.raises(exception.ConfigError, match="not a thin pool"):
            backend.setup()
    finally:
        guestenv.lvm("lvremove", "-q", "-f", f"{lvm_vg}/plain")


@pytest.mark.parametrize("prefix", ["snapshot-", "pvmove_", "evs-revert-"])
def test_reserved_name_prefix_is_a_config_error(lvm_vg, prefix):
    backend = guestenv.make_backend(lvm_vg, "pool", lvm_snapshot_prefix=prefix)
    with pytest.raises(exception.ConfigError, match="reserved"):
        backend.setup()


@pytest.mark.parametrize("bad_id", ["has/slash", "-leading-dash", "x" * 200, "a_tmeta", ""])
def test_ids_that_cannot_name_an_lv_are_refused(lvm_backend, lvm_vg, bad_id):
    before = guestenv.lv_names(lvm_vg)
    with pytest.raises(exception.InvalidInput):
        lvm_backend.create_volume(bad_id, 16 * MiB)
    assert guestenv.lv_names(lvm_vg) == before


@pytest.mark.parametrize("size", [0, -1, 1.5])
def test_bad_sizes_are_refused(lvm_backend, lvm_vg, new_id, size):
    before = guestenv.lv_names(lvm_vg)
    with pytest.raises(exception.InvalidSize):
        lvm_backend.create_volume(new_id(), size)
    assert guestenv.lv_names(lvm_vg) == before


def test_creating_an_existing_volume_keeps_it(lvm_backend, new_id):
    vol = new_id()
    lvm_backend.create_volume(vol, 16 * MiB)
    with lvm_backend.open_device(vol, writable=True) as dev:
        dev.write(0, b"keep")
    with pytest.raises(exception.AlreadyExists):
        lvm_backend.create_volume(vol, 16 * MiB)
    with lvm_backend.open_device(vol, writable=False) as dev:
        assert dev.read(0, 4) == b"keep"


def test_failed_clone_leaves_no_lv(lvm_backend, lvm_vg, new_id, monkeypatch):
    """The failure between lvcreate and lvextend is injected (LVM won't fail on cue)."""
    src, made = new_id(), new_id()
    lvm_backend.create_volume(src, 16 * MiB)
    monkeypatch.setenv("EVS_FAULT_INJECT", "lvm_thin.clone.created=raise")
    with pytest.raises(exception.BackendError, match="injected"):
        lvm_backend.clone_volume(src, made, 32 * MiB)
    assert f"volume-{made}" not in guestenv.lv_names(lvm_vg)
    assert not lvm_backend.exists(made)


def test_root_helper_prefixes_every_command(lvm_vg, new_id):
    backend = guestenv.make_backend(
        lvm_vg, "pool", lvm_root_helper="env LVM_SUPPRESS_FD_WARNINGS=1"
    )
    backend.setup()
    vol = new_id()
    backend.create_volume(vol, 16 * MiB)
    assert backend.exists(vol)
    backend.delete_volume(vol)


def test_missing_root_helper_is_a_clear_error(lvm_vg):
    backend = guestenv.make_backend(lvm_vg, "pool", lvm_root_helper="/nonexistent/rootwrap")
    with pytest.raises(exception.BackendError, match="cannot run"):
        backend.setup()


def test_connection_properties_name_the_device_node(lvm_backend, lvm_vg, new_id):
    vol = new_id()
    lvm_backend.create_volume(vol, 16 * MiB)
    props = lvm_backend.connection_properties(vol)
    assert props == {"device_path": f"/dev/{lvm_vg}/volume-{vol}"}
    with open(props["device_path"], "rb") as dev:
        assert dev.read(4) == bytes(4)
