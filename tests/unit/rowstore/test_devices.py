"""Devices: sizes, reads, writes, discards, extends and the errors around them."""

import os
import random
import shutil
import tempfile
import unittest

import ddt
import pytest

from evs_driver import exception
from evs_driver.blockdev import HOLE, ZERO
from evs_driver.rowstore import Pool
from tests.unit.rowstore.conftest import CHUNK, spy_chunk_writes


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 37 * CHUNK + 5, 1 << 40])
def test_any_byte_size_reads_zeros_until_written(pool, size):
    pool.create_volume("v", size)
    assert pool.device("v").size == size
    assert pool.read("v", 0, min(size, 3 * CHUNK)) == bytes(min(size, 3 * CHUNK))
    assert pool.read("v", size - 1, 1) == b"\0"


@pytest.mark.parametrize(
    "offset, data",
    [(0, b"a"), (1, b"xyz"), (CHUNK - 2, b"span"), (3 * CHUNK + 7, b"q" * (5 * CHUNK + 3))],
)
def test_write_then_read_at_any_offset(pool, offset, data):
    pool.create_volume("v", 16 * CHUNK)
    pool.write("v", offset, data)
    assert pool.read("v", offset, len(data)) == data
    assert pool.read("v", 0, offset) == bytes(offset)
    end = offset + len(data)
    assert pool.read("v", end, 16 * CHUNK - end) == bytes(16 * CHUNK - end)


@pytest.mark.parametrize("size", [0, -1, 1.5, "1", True, None, (1 << 60) + 1])
def test_invalid_sizes_are_refused_and_nothing_is_created(pool, size):
    with pytest.raises(exception.InvalidSize):
        pool.create_volume("v", size)
    assert pool.devices() == []


@pytest.mark.parametrize("name", ["", "x" * 256, "é" * 128, None, 7])
def test_invalid_names_are_refused(pool, name):
    with pytest.raises(exception.InvalidInput):
        pool.create_volume(name, CHUNK)
    assert pool.devices() == []


def test_duplicate_names_are_refused(pool):
    pool.create_volume("v", CHUNK)
    with pytest.raises(exception.AlreadyExists):
        pool.create_volume("v", 2 * CHUNK)
    with pytest.raises(exception.AlreadyExists):
        pool.create_snapshot("v", "v")
    assert pool.device("v").size == CHUNK


@pytest.mark.parametrize(
    "offset, length", [(0, 4 * CHUNK + 1), (4 * CHUNK, 1), (4 * CHUNK - 1, 2), (-1, 1), (0, -1)]
)
def test_io_past_the_end_fails_clearly(pool, offset, length):
    pool.create_volume("v", 4 * CHUNK)
    pool.write("v", 0, b"keep")
    with pytest.raises(exception.InvalidInput):
        pool.read("v", offset, length)
    if length > 0:  # a write's length is its data's, never negative
        with pytest.raises(exception.InvalidInput):
            pool.write("v", offset, b"x" * length)
    with pytest.raises(exception.InvalidInput):
        pool.discard("v", offset, length)
    assert pool.read("v", 0, 4) == b"keep"


def test_unknown_devices_raise_not_found(pool):
    for call in (
        lambda: pool.read("nope", 0, 1),
        lambda: pool.write("nope", 0, b"x"),
        lambda: pool.create_snapshot("nope", "s"),
        lambda: pool.clone("nope", "c"),
        lambda: pool.delete("nope"),
        lambda: pool.extend("nope", CHUNK),
        lambda: pool.device("nope"),
    ):
        with pytest.raises(exception.NotFound):
            call()


@pytest.mark.parametrize(
    "offset, length",
    [(0, 8 * CHUNK), (1, 10), (CHUNK - 3, CHUNK + 6), (2 * CHUNK, 3 * CHUNK), (5, 7 * CHUNK)],
)
def test_discard_reads_as_zeros_and_frees_whole_chunks(pool, offset, length):
    pool.create_volume("v", 8 * CHUNK)
    pattern = bytes(range(256)) * (8 * CHUNK // 256)
    pool.write("v", 0, pattern)
    used = pool.usage().used_bytes
    pool.discard("v", offset, length)
    expected = bytearray(pattern)
    expected[offset : offset + length] = bytes(length)
    assert pool.read("v", 0, 8 * CHUNK) == expected
    whole = max(0, (offset + length) // CHUNK - -(-offset // CHUNK))
    pool.commit()
    assert pool.usage().used_bytes == used - whole * CHUNK
    assert pool.check().clean


def test_extend_keeps_data_and_new_space_reads_zeros(pool):
    pool.create_volume("v", 3 * CHUNK)
    pool.write("v", 0, b"old" * CHUNK)
    pool.extend("v", 300 * CHUNK)  # grows the tree by several levels
    assert pool.read("v", 0, 3 * CHUNK) == b"old" * CHUNK
    assert pool.read("v", 3 * CHUNK, 297 * CHUNK) == bytes(297 * CHUNK)
    pool.write("v", 299 * CHUNK, b"new")
    assert pool.read("v", 299 * CHUNK, 3) == b"new"
    assert pool.check().clean


@pytest.mark.parametrize("size", [CHUNK, 2 * CHUNK - 1, 0])
def test_extend_never_shrinks(pool, size):
    pool.create_volume("v", 2 * CHUNK)
    with pytest.raises(exception.InvalidSize):
        pool.extend("v", size)
    assert pool.device("v").size == 2 * CHUNK


def test_snapshots_are_read_only(pool):
    pool.create_volume("v", 2 * CHUNK)
    pool.create_snapshot("v", "s")
    with pytest.raises(exception.ReadOnlyDevice):
        pool.write("s", 0, b"x")
    with pytest.raises(exception.ReadOnlyDevice):
        pool.discard("s", 0, CHUNK)
    with pytest.raises(exception.InvalidOperation):
        pool.extend("s", 4 * CHUNK)
    with pytest.raises(exception.InvalidOperation):
        pool.create_snapshot("s", "s2")


@ddt.ddt
class TestPoolCreation(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="evs-test-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "pool")

    @ddt.data(0, 1000, 3 * 4096, 4096 + 1, 1 << 25, "64k", True, None)
    def test_bad_chunk_sizes_are_refused(self, chunk_size):
        with self.assertRaises(exception.InvalidInput):
            Pool.create(self.path, 1 << 20, chunk_size)
        self.assertFalse(os.path.exists(self.path))

    @ddt.data(0, -1, 4095, 1.5, "1G")
    def test_bad_capacities_are_refused(self, capacity):
        with self.assertRaises(exception.InvalidSize):
            Pool.create(self.path, capacity, 4096)

    def test_an_existing_pool_is_not_overwritten(self):
        with Pool.create(self.path, 1 << 20, 4096, background=False) as pool:
            pool.create_volume("v", 4096)
        with self.assertRaises(exception.AlreadyExists):
            Pool.create(self.path, 1 << 20, 4096)
        with Pool.open(self.path, background=False) as pool:
            self.assertTrue(pool.exists("v"))

    def test_a_directory_without_a_pool_is_refused(self):
        with self.assertRaises(exception.InvalidPool):
            Pool.open(self.directory)


def test_a_hole_between_physically_adjacent_chunks_reads_as_zeros(pool):
    pool.create_volume("v", 4 * CHUNK)
    pool.write("v", 0, b"a" * CHUNK)  # chunk n
    pool.write("v", 2 * CHUNK, b"c" * CHUNK)  # chunk n + 1, two slots further on
    assert pool.read("v", 0, 3 * CHUNK) == b"a" * CHUNK + bytes(CHUNK) + b"c" * CHUNK


@pytest.mark.parametrize("rewrite", [False, True], ids=["allocating", "in-place"])
def test_a_write_reaches_the_data_file_one_chunk_at_a_time(pool, monkeypatch, rewrite):
    # Why it matters: the page cache sizes folios by the writes that create them, and a
    # small overwrite walks its whole folio, so a write across chunks must not be merged.
    pool.create_volume("v", 16 * CHUNK)
    if rewrite:
        pool.write("v", 0, b"o" * 16 * CHUNK)
    calls = spy_chunk_writes(pool, monkeypatch)
    pool.write("v", CHUNK // 2, b"n" * 5 * CHUNK)
    assert calls and all(p // CHUNK == (p + n - 1) // CHUNK for p, n in calls)
    assert sum(n for _, n in calls) >= 5 * CHUNK
    assert pool.read("v", CHUNK // 2, 5 * CHUNK) == b"n" * 5 * CHUNK


def test_a_refused_snapshot_or_clone_changes_no_reference_count(pool):
    pool.create_volume("v", 4 * CHUNK)
    pool.write("v", 0, b"x" * 4 * CHUNK)
    pool.create_volume("w", CHUNK)
    with pytest.raises(exception.AlreadyExists):
        pool.create_snapshot("v", "w")
    with pytest.raises(exception.AlreadyExists):
        pool.clone("v", "w")
    assert pool.check().clean


def _chunk_by_chunk(mapped: list[bool], offset: int, length: int) -> list[tuple[int, int]]:
    """The extents of a range worked out one chunk at a time, runs of equal flags joined."""
    runs: list[tuple[int, int]] = []
    position, end = offset, offset + length
    while position < end:
        flags = 0 if mapped[position // CHUNK] else HOLE | ZERO
        run = min(end, (position // CHUNK + 1) * CHUNK) - position
        if runs and runs[-1][1] == flags:
            runs[-1] = (runs[-1][0] + run, flags)
        else:
            runs.append((run, flags))
        position += run
    return runs


def test_extents_are_the_mapping_over_missing_and_present_leaves(pool):
    chunks = 200  # fan-out 4: leaves of 4 chunks, most of them missing at first
    pool.create_volume("v", chunks * CHUNK)
    mapped = [False] * chunks
    rng = random.Random(11)
    for _ in range(60):
        chunk = rng.randrange(chunks)
        if rng.random() < 0.7:
            pool.write("v", chunk * CHUNK + rng.randrange(CHUNK), b"x")
            mapped[chunk] = True
        else:
            pool.discard("v", chunk * CHUNK, CHUNK)
            mapped[chunk] = False
        offset = rng.randrange(chunks * CHUNK - 1)
        length = rng.randrange(1, min(chunks * CHUNK - offset, 40 * CHUNK) + 1)
        assert pool.extents("v", offset, length) == _chunk_by_chunk(mapped, offset, length)
