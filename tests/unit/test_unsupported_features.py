"""Backends without a feature say so plainly (``NotSupportedByBackend``, EOPNOTSUPP)."""

import errno
import types

import pytest

from evs_driver import exception
from evs_driver.backends.lvm_thin import LvmThinBackend
from evs_driver.backends.rbd import RbdBackend


@pytest.mark.parametrize("kind,cls", [("lvm_thin", LvmThinBackend), ("rbd", RbdBackend)])
def test_changed_block_diffs_are_refused_by_name(kind, cls):
    backend = cls(types.SimpleNamespace(volume_backend=kind), "b1")
    with pytest.raises(exception.NotSupportedByBackend) as caught:
        backend.changed_extents("snap-a", "snap-b")
    assert caught.value.code == errno.EOPNOTSUPP
    assert str(caught.value) == f"Backend b1 ({kind}) does not support changed-block diffs."
