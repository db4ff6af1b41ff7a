"""Diffs between devices of a pool: exact to the overlay block, across sizes and heights,
and costing what differs (nodes read), not the devices' size."""

import pytest

from evs_driver.blockdev import CHANGED
from evs_driver.rowstore import Pool

CHUNK = 4096
BLOCK = CHUNK // 16


def _apply(pool, old, new):
    """The old device's bytes with the diff applied, and the new device's (both padded)."""
    runs, _ = pool.diff(old, new)
    size = max(pool.device(new).size, pool.device(old).size if old else 0)
    copy = bytearray(pool.read(old, 0, pool.device(old).size)) if old else bytearray()
    copy += bytearray(size - len(copy))
    for offset, length, kind in runs:
        copy[offset : offset + length] = (
            pool.read(new, offset, length) if kind == "data" else bytes(length)
        )
    target = pool.read(new, 0, pool.device(new).size)
    return bytes(copy), target + bytes(size - len(target))


def test_a_small_write_after_a_snapshot_is_one_block(pool):
    pool.create_volume("v", 64 * CHUNK)
    pool.write("v", 0, b"a" * (8 * CHUNK))
    pool.create_snapshot("v", "s1")
    pool.write("v", 3 * CHUNK + 5 * BLOCK + 7, b"b" * 10)  # an overlay of one block
    pool.create_snapshot("v", "s2")
    assert pool.diff("s1", "s2") == ([(3 * CHUNK + 5 * BLOCK, BLOCK, "data")], 64 * CHUNK)
    assert pool.diff("s2", "s1")[0] == [(3 * CHUNK + 5 * BLOCK, BLOCK, "data")]


def test_new_chunks_discards_and_identical_devices(pool):
    pool.create_volume("v", 64 * CHUNK)
    pool.write("v", 0, b"a" * (4 * CHUNK))
    pool.create_snapshot("v", "s1")
    pool.discard("v", CHUNK, 2 * CHUNK)
    pool.write("v", 40 * CHUNK, b"c" * 100)
    pool.create_snapshot("v", "s2")
    runs, _ = pool.diff("s1", "s2")
    assert runs == [(CHUNK, 2 * CHUNK, "zero"), (40 * CHUNK, CHUNK, "data")]
    assert pool.diff("s2", "v") == ([], 64 * CHUNK)
    assert pool.diff(None, "s1")[0] == [(0, 4 * CHUNK, "data")]


class TestSizes:
    @pytest.mark.parametrize("old_chunks,new_chunks", [(3, 40), (3, 300), (17, 70), (1, 5000)])
    def test_a_volume_grown_by_several_levels_compares_with_its_old_snapshot(
        self, pool, old_chunks, new_chunks
    ):
        pool.create_volume("v", old_chunks * CHUNK - 100)
        pool.write("v", 0, b"x" * (old_chunks * CHUNK - 100))
        pool.create_snapshot("v", "small")
        pool.extend("v", new_chunks * CHUNK)
        assert pool.diff("small", "v")[0] == []
        pool.write("v", (new_chunks - 1) * CHUNK, b"y" * 10)
        pool.write("v", CHUNK // 2, b"z" * 10)
        old, new = _apply(pool, "small", "v")
        assert old == new
        old, new = _apply(pool, "v", "small")
        assert old == new


def test_the_cost_is_what_differs_not_the_size(tmp_path, monkeypatch):
    """Nodes read for one changed chunk: the same for a 1 GiB and a 64 GiB volume."""
    with Pool.create(str(tmp_path / "p"), 256 * 65536, background=False) as pool:
        reads = []
        for size in (1 << 30, 64 << 30):
            name = f"v{size}"
            pool.create_volume(name, size)
            for offset in range(0, size, size // 8):  # some data spread over the volume
                pool.write(name, offset, b"d" * 65536)
            pool.create_snapshot(name, f"{name}a")
            pool.write(name, size // 2 + 4096, b"e" * 4096)  # an overlay block
            pool.create_snapshot(name, f"{name}b")
            counted = _count_node_reads(pool, monkeypatch)
            runs, _ = pool.diff(f"{name}a", f"{name}b")
            monkeypatch.undo()
            assert runs == [(size // 2 + 4096, 4096, "data")]
            reads.append(len(counted))
        assert reads[0] == reads[1] <= 6


def _count_node_reads(pool, monkeypatch) -> list[int]:
    """The ids of the nodes read from now on (until ``monkeypatch.undo``)."""
    counted, get = [], pool._nodes.get
    monkeypatch.setattr(pool._nodes, "get", lambda i: (counted.append(i), get(i))[1])
    return counted


def test_changes_reports_dirty_runs_from_the_start(pool):
    pool.create_volume("v", 32 * CHUNK)
    pool.create_snapshot("v", "s")
    pool.write("v", 4 * CHUNK, b"w" * CHUNK)
    pool.write("v", 10 * CHUNK, b"w" * CHUNK)
    assert pool.changes("s", "v", CHUNK, 31 * CHUNK, 1024) == [
        (3 * CHUNK, 0),
        (CHUNK, CHANGED),
        (5 * CHUNK, 0),
        (CHUNK, CHANGED),
        (21 * CHUNK, 0),
    ]
    # A small limit stops before the second change: the client asks again from there.
    assert pool.changes("s", "v", 0, 32 * CHUNK, 2) == [
        (4 * CHUNK, 0),
        (CHUNK, CHANGED),
        (5 * CHUNK, 0),
    ]
