"""The chunk store alone: positional I/O, zeroing, and the data file's identity."""

import os

import pytest

from evs_driver import exception
from evs_driver.rowstore.chunkstore import IDENTITY_BYTES, ChunkStore, new_pool_id, runs

CHUNK = 4096


@pytest.fixture
def store(tmp_path):
    path, pool_id = str(tmp_path / "data"), new_pool_id()
    ChunkStore.create(path, CHUNK, 8, pool_id)
    opened = ChunkStore(path, CHUNK, 8, str(tmp_path))
    opened.verify_identity(pool_id)
    opened.pool_id = pool_id
    yield opened
    opened.close()


def test_writes_read_back_and_zeroed_chunks_read_as_zeros(store):
    store.write(CHUNK - 2, b"span")
    view = memoryview(bytearray(4))
    store.readinto(CHUNK - 2, view)
    assert bytes(view) == b"span"
    store.zero_chunks([0, 1])
    store.readinto(CHUNK - 2, view)
    assert bytes(view) == bytes(4)
    store.sync()


def test_the_file_is_its_chunks_and_an_identity_block(store):
    assert os.path.getsize(store.path) == 8 * CHUNK + IDENTITY_BYTES
    assert store.problems(store.pool_id) == []
    assert "belongs to another pool" in store.problems(new_pool_id())[0]
    with pytest.raises(exception.PoolCorrupt, match="belongs to another pool"):
        store.verify_identity(new_pool_id())


def test_a_read_past_a_truncated_end_raises(store):
    os.truncate(store.path, CHUNK)
    with pytest.raises(exception.PoolCorrupt, match="truncated"):
        store.readinto(2 * CHUNK, memoryview(bytearray(10)))
    assert "is 4096 bytes" in store.problems(store.pool_id)[0]


def test_runs_groups_consecutive_numbers():
    assert list(runs([1, 2, 3, 7, 9, 10])) == [(1, 3), (7, 1), (9, 2)]
    assert list(runs([])) == []


def test_an_overlapping_copy_goes_through_a_buffer_and_later_ones_still_in_the_kernel(
    store, monkeypatch
):
    """The kernel gives EINVAL for overlapping ranges, which alone must not turn kernel
    copies off for good (the copies are counted through the disk seam)."""
    store.write(0, bytes(range(256)) * 32)
    kernel = []
    real = store._disk.copy_within

    def counted(fd, source, position, length):
        kernel.append((source, position, length))
        real(fd, source, position, length)

    monkeypatch.setattr(store._disk, "copy_within", counted)
    store.copy_in(0, 0, CHUNK)  # the same bytes onto themselves
    store.copy_in(16, 0, 64)
    view = memoryview(bytearray(64))
    store.readinto(0, view)
    assert bytes(view) == bytes(range(16, 80)) and kernel == []
    store.copy_in(0, 2 * CHUNK, CHUNK)
    assert kernel == [(0, 2 * CHUNK, CHUNK)]
