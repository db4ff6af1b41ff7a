"""Snapshots, clones, revert, delete and space accounting (EVS_RULES sections 1 to 6)."""

import sqlite3

import pytest

from evs_driver import exception
from tests.unit.rowstore.conftest import CHUNK

D1, D2, D3, D4 = (bytes([n]) * CHUNK for n in (1, 2, 3, 4))


def _evs_example(pool):
    """v1 gets d1, d2; s1; d3 written and d2 changed to d4; s2."""
    pool.create_volume("v1", 8 * CHUNK)
    pool.write("v1", 0, D1 + D2)
    pool.create_snapshot("v1", "s1")
    pool.write("v1", 2 * CHUNK, D3)
    pool.write("v1", CHUNK, D4)
    pool.create_snapshot("v1", "s2")


def test_the_evs_example(pool):
    _evs_example(pool)
    assert pool.read("s1", 0, 3 * CHUNK) == D1 + D2 + bytes(CHUNK)
    assert pool.read("s2", 0, 3 * CHUNK) == D1 + D4 + D3
    # d3 and d4 went to new space: 4 chunks in all, d1 shared by everyone.
    assert pool.usage().used_bytes == 4 * CHUNK
    assert pool.exclusive_bytes("s1") == CHUNK  # d2, referred to by s1 alone
    assert pool.exclusive_bytes("s2") == 0  # everything shared with v1
    assert pool.check().clean


def _node_rows(pool):
    pool.commit()
    db = sqlite3.connect(pool.path + "/metadata.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("written_chunks", [1, 700])
def test_snapshot_adds_no_metadata_nodes_whatever_was_written(pool, written_chunks):
    pool.create_volume("v", 800 * CHUNK)
    pool.write("v", 0, b"x" * written_chunks * CHUNK)
    before = _node_rows(pool)
    pool.create_snapshot("v", "s")
    pool.clone("s", "c")
    pool.revert("v", "s")
    assert _node_rows(pool) == before  # O(1): roots are shared, nothing is copied
    assert pool.usage().used_bytes == written_chunks * CHUNK


def test_writes_after_a_snapshot_go_to_new_space(pool):
    pool.create_volume("v", 4 * CHUNK)
    pool.write("v", 0, D1)
    pool.create_snapshot("v", "s")
    pool.write("v", 10, b"partial")  # read-modify-write into a new chunk
    assert pool.read("s", 0, CHUNK) == D1
    assert pool.read("v", 0, CHUNK) == D1[:10] + b"partial" + D1[17:]
    assert pool.usage().used_bytes == 2 * CHUNK
    pool.write("v", 20, b"again")  # the new chunk is the volume's alone: in place
    assert pool.usage().used_bytes == 2 * CHUNK


@pytest.mark.parametrize("grow", [0, 1, CHUNK, 500 * CHUNK])
def test_clone_from_snapshot_has_its_data_then_zeros(pool, grow):
    _evs_example(pool)
    pool.clone("s1", "c", 8 * CHUNK + grow)
    assert pool.device("c").size == 8 * CHUNK + grow
    assert pool.read("c", 0, 2 * CHUNK) == D1 + D2
    assert pool.read("c", 2 * CHUNK, 6 * CHUNK + grow) == bytes(6 * CHUNK + grow)


def test_clone_smaller_than_source_is_refused(pool):
    _evs_example(pool)
    with pytest.raises(exception.InvalidSize):
        pool.clone("s1", "c", 8 * CHUNK - 1)
    assert not pool.exists("c")


def test_clones_are_independent_of_each_other_and_of_their_source(pool):
    _evs_example(pool)
    pool.clone("s2", "a")
    pool.clone("s2", "b")
    pool.clone("v1", "direct")
    pool.write("a", 0, b"A" * CHUNK)
    pool.write("b", 0, b"B" * CHUNK)
    pool.write("v1", 0, b"V" * CHUNK)
    assert pool.read("a", 0, CHUNK) == b"A" * CHUNK
    assert pool.read("b", 0, CHUNK) == b"B" * CHUNK
    assert pool.read("direct", 0, CHUNK) == D1
    pool.delete("s2")
    pool.delete("v1")
    pool.collect()
    assert pool.read("a", CHUNK, 2 * CHUNK) == D4 + D3
    assert pool.read("direct", 0, 3 * CHUNK) == D1 + D4 + D3
    assert pool.check().clean


def test_revert_to_any_snapshot_any_number_of_times_keeps_every_snapshot(pool):
    _evs_example(pool)
    pool.write("v1", 3 * CHUNK, b"later" * 10)
    pool.create_snapshot("v1", "s3")
    for snapshot, expected in [
        ("s1", D1 + D2 + bytes(CHUNK)),
        ("s3", D1 + D4 + D3),
        ("s1", D1 + D2 + bytes(CHUNK)),
        ("s2", D1 + D4 + D3),
        ("s1", D1 + D2 + bytes(CHUNK)),
    ]:
        pool.write("v1", 0, b"scribble")
        pool.revert("v1", snapshot)
        assert pool.read("v1", 0, 3 * CHUNK) == expected
        assert [d.name for d in pool.devices()] == ["v1", "s1", "s2", "s3"]
    assert pool.read("s3", 3 * CHUNK, 50) == b"later" * 10
    assert pool.check().clean


def test_revert_keeps_the_extended_size_and_zeros_beyond_the_snapshot(pool):
    _evs_example(pool)
    pool.extend("v1", 400 * CHUNK)
    pool.write("v1", 399 * CHUNK, b"tail")
    pool.revert("v1", "s1")
    assert pool.device("v1").size == 400 * CHUNK
    assert pool.device("s1").size == 8 * CHUNK
    assert pool.read("v1", 8 * CHUNK, 392 * CHUNK) == bytes(392 * CHUNK)
    assert pool.check().clean


def test_revert_only_to_a_snapshot_of_the_same_volume(pool):
    _evs_example(pool)
    pool.create_volume("other", 8 * CHUNK)
    pool.create_snapshot("other", "os")
    for volume, snapshot in [("v1", "os"), ("other", "s1"), ("v1", "v1"), ("s1", "s1")]:
        with pytest.raises(exception.InvalidOperation):
            pool.revert(volume, snapshot)
    assert pool.read("v1", 0, 3 * CHUNK) == D1 + D4 + D3


def test_deleting_a_snapshot_frees_exactly_its_exclusive_space(pool):
    _evs_example(pool)
    exclusive = pool.exclusive_bytes("s1")
    used = pool.usage().used_bytes
    pool.delete("s1")
    pool.collect()
    assert pool.usage().used_bytes == used - exclusive
    assert pool.read("v1", 0, 3 * CHUNK) == D1 + D4 + D3
    assert pool.read("s2", 0, 3 * CHUNK) == D1 + D4 + D3


def test_deleting_everything_frees_everything(pool):
    _evs_example(pool)
    pool.clone("s1", "c", 100 * CHUNK)
    pool.write("c", 90 * CHUNK, b"x")
    for name in ["s2", "v1", "c", "s1"]:
        pool.delete(name)
    pool.collect()
    assert pool.usage().used_bytes == 0
    assert pool.garbage_nodes == 0
    assert pool.check().clean


def test_freed_chunks_never_expose_old_data(pool):
    pool.create_volume("secret", 4 * CHUNK)
    pool.write("secret", 0, b"S" * 4 * CHUNK)
    pool.delete("secret")
    pool.collect()
    pool.create_volume("new", 4 * CHUNK)
    for n in range(4):
        pool.write("new", n * CHUNK + 100, b"n")  # partial writes into reused chunks
    assert b"S" not in pool.read("new", 0, 4 * CHUNK)


def test_usage_reports_provisioned_and_counts(pool):
    _evs_example(pool)
    pool.create_volume("v2", 10 * CHUNK)
    usage = pool.usage()
    assert (usage.volumes, usage.snapshots) == (2, 2)
    assert usage.provisioned_bytes == 18 * CHUNK
    assert usage.total_bytes == 1024 * CHUNK
    assert usage.free_bytes == usage.total_bytes - usage.used_bytes
    assert pool.device("s1").mapped_bytes == 2 * CHUNK
    assert pool.device("s1").origin == "v1"
