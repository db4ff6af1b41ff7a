"""A thin pool filled to 100%: writes fail with a clear PoolFull, deleting snapshots recovers."""

import uuid

import pytest

from evs_driver import exception
from tests.lvm_guest import guestenv

pytestmark = pytest.mark.skipif(not guestenv.in_guest(), reason=guestenv.SKIP_REASON)

MiB = 1 << 20


@pytest.fixture
def tiny_backend():
    """A backend whose pool is about 40 MiB (4% of the guest's 1 GiB third disk)."""
    name, disk = "evs-full", guestenv.disks()[2]
    guestenv.make_vg(name, disk)
    backend = guestenv.make_backend(
        name, "tiny", lvm_create_thin_pool=True, lvm_thin_pool_size_percent=4
    )
    backend.setup()
    yield backend
    guestenv.remove_vg(name, disk)


def write_mib(backend, vol, first, count, byte):
    """Write ``count`` MiB of ``byte`` from MiB ``first``, flushing each; return MiB written."""
    with backend.open_device(vol, writable=True) as dev:
        for i in range(first, first + count):
            dev.write(i * MiB, bytes([byte]) * MiB)
            dev.flush()
    return count


def test_full_pool_fails_writes_clearly_and_deleting_a_snapshot_recovers(tiny_backend):
    backend = tiny_backend
    total = backend.pool_stats().total_bytes
    assert 32 * MiB <= total <= 48 * MiB
    vol, snap = str(uuid.uuid4()), str(uuid.uuid4())
    backend.create_volume(vol, 128 * MiB)
    half = total // MiB // 2 + 2
    write_mib(backend, vol, 0, half, 1)
    backend.create_snapshot(vol, snap)
    # Overwriting what the snapshot holds needs new space: more than is left.
    with pytest.raises(exception.PoolFull) as info:
        write_mib(backend, vol, 0, half, 2)
    message = str(info.value)
    assert "tiny" in message and "exhausted" in message
    guestenv.save_result(
        "lvs-pool-full.json",
        guestenv.lvm(
            "lvs", "-a", "--reportformat", "json", "--units", "b", "--nosuffix",
            "-o", "lv_name,vg_name,lv_size,lv_attr,segtype,pool_lv,origin,data_percent,"
            "metadata_percent,lv_metadata_size,chunk_size,thin_id,lv_when_full,lv_tags",
            "evs-full",
        ),
    )  # fmt: skip
    stats = backend.pool_stats()
    assert stats.free_bytes == 0
    assert not backend.check().clean
    with pytest.raises(exception.PoolFull):
        backend.create_volume(str(uuid.uuid4()), 16 * MiB)

    backend.delete_snapshot(snap)
    assert backend.pool_stats().free_bytes > 0
    write_mib(backend, vol, 0, half, 3)  # the lost writes, again: now they fit
    with backend.open_device(vol, writable=False) as dev:
        assert dev.read(0, MiB) == bytes([3]) * MiB
        assert dev.read((half - 1) * MiB, MiB) == bytes([3]) * MiB
    assert backend.check().clean
