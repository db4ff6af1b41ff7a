"""Fixtures of the LVM functional tests: scratch volume groups on the guest's disks."""

import uuid

import pytest

from tests.lvm_guest import guestenv


@pytest.fixture(scope="session")
def lvm_vg():
    """A volume group on the guest's second disk, for the whole session."""
    if not guestenv.in_guest():
        pytest.skip(guestenv.SKIP_REASON)
    name, disk = "evs-functional", guestenv.disks()[1]
    guestenv.make_vg(name, disk)
    yield name
    guestenv.remove_vg(name, disk)


@pytest.fixture
def lvm_backend(lvm_vg):
    """A set-up backend on pool ``pool`` of ``lvm_vg`` (created by the first test)."""
    backend = guestenv.make_backend(
        lvm_vg, "pool", lvm_create_thin_pool=True, lvm_thin_pool_size_percent=50
    )
    backend.setup()
    return backend


@pytest.fixture
def new_id():
    """Make fresh catalog-style ids (UUID strings)."""
    return lambda: str(uuid.uuid4())
