"""Backends without a feature say so plainly (``NotSupportedByBackend``, EOPNOTSUPP)."""

import errno
import types

import pytest

from evs_driver import exception
from evs_driver.backends.local import LocalBackend
from evs_driver.backends.lvm_thin import LvmThinBackend
from evs_driver.backends.rbd import RbdBackend
from evs_driver.driver import EVSDriver


@pytest.mark.parametrize("kind,cls", [("lvm_thin", LvmThinBackend), ("rbd", RbdBackend)])
def test_changed_block_diffs_are_refused_by_name(kind, cls):
    backend = cls(types.SimpleNamespace(volume_backend=kind), "b1")
    with pytest.raises(exception.NotSupportedByBackend) as caught:
        backend.changed_extents("snap-a", "snap-b")
    assert caught.value.code == errno.EOPNOTSUPP
    assert str(caught.value) == f"Backend b1 ({kind}) does not support changed-block diffs."
    assert not backend.supports_diffs  # so its NBD exports offer no evs:changed-since:


@pytest.mark.parametrize("kind,cls", [("lvm_thin", LvmThinBackend), ("rbd", RbdBackend)])
def test_group_calls_are_refused_by_name(kind, cls):
    driver = EVSDriver(configuration=types.SimpleNamespace(volume_backend=kind))
    driver.backend = cls(types.SimpleNamespace(volume_backend=kind), "b1")
    for call in (
        lambda: driver.create_group(None, None),
        lambda: driver.create_group_snapshot(
            None, None, [types.SimpleNamespace(volume_id="v", id="s")]
        ),
        lambda: driver.revert_group_to_snapshot(None, []),
    ):
        with pytest.raises(exception.NotSupportedByBackend, match="group"):
            call()


def test_a_local_driver_says_it_takes_consistent_group_snapshots(tmp_path):
    conf = types.SimpleNamespace(volume_backend="local")
    driver = EVSDriver(configuration=conf)
    driver.backend = LocalBackend(conf, "b1")
    assert driver.backend.supports_groups
    driver.require_groups()  # no error
