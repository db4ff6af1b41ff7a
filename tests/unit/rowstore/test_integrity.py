"""The checker, a full pool, durability across reopen and power cuts, concurrency, locking."""

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from array import array

import pytest

from evs_driver import exception
from evs_driver.rowstore import Pool
from tests.unit.rowstore.conftest import CHUNK


def _tamper(pool, sql, *args):
    """Change committed metadata behind the engine's back (the damage a checker must see)."""
    pool.commit()
    db = sqlite3.connect(pool.path + "/metadata.sqlite")
    with db:
        db.execute(sql, args)
    db.close()


def _bump_count(pool, space, block, delta):
    pool.commit()
    db = sqlite3.connect(pool.path + "/metadata.sqlite")
    (blob,) = db.execute(
        "SELECT counts FROM refcounts WHERE space = ? AND page = 0", (space,)
    ).fetchone()
    counts = array("I", blob)
    counts[block] += delta
    with db:
        db.execute(
            "UPDATE refcounts SET counts = ? WHERE space = ? AND page = 0",
            (counts.tobytes(), space),
        )
    db.close()


def _two_volumes(pool):
    pool.create_volume("v", 8 * CHUNK)
    pool.write("v", 0, b"a" * 8 * CHUNK)
    pool.create_snapshot("v", "s")
    pool.write("v", 0, b"b" * CHUNK)
    pool.commit()


def test_a_clean_pool_checks_clean(pool):
    _two_volumes(pool)
    report = pool.check()
    assert report.clean, report.problems
    assert "2 devices" in report.summary


@pytest.mark.parametrize(
    "space, block, delta, words",
    [
        ("data", 0, +1, "leak: chunk 0"),
        ("data", 1, -1, "double reference: chunk 1"),
        ("node", 0, +1, "leak: node 1"),
        ("node", 0, -1, "double reference: node 1"),
    ],
)
def test_the_checker_reports_wrong_reference_counts(pool, space, block, delta, words):
    _two_volumes(pool)
    _bump_count(pool, space, block, delta)
    problems = pool.check_committed().problems
    assert any(words in p for p in problems), problems


def test_the_checker_reports_dangling_pointers_and_lost_nodes(pool):
    _two_volumes(pool)
    _tamper(pool, "UPDATE devices SET root = 999 WHERE name = 's'")
    problems = pool.check_committed().problems
    assert any("dangling pointer: device s refers to missing node 999" in p for p in problems)
    assert any("leak:" in p for p in problems)


def test_the_checker_reports_chunks_past_the_data(pool):
    _two_volumes(pool)
    db = sqlite3.connect(pool.path + "/metadata.sqlite")
    (node_id, body) = db.execute("SELECT id, body FROM nodes WHERE level = 0 LIMIT 1").fetchone()
    entries = array("I", body)
    entries[0] = 100000
    with db:
        db.execute("UPDATE nodes SET body = ? WHERE id = ?", (entries.tobytes(), node_id))
    db.close()
    problems = pool.check_committed().problems
    assert any("beyond the allocated data" in p for p in problems), problems


def test_the_checker_reports_a_wrong_mapped_count(pool):
    _two_volumes(pool)
    _tamper(pool, "UPDATE devices SET mapped = 3 WHERE name = 'v'")
    problems = pool.check_committed().problems
    assert any("device v records 3 mapped chunks but maps 8" in p for p in problems), problems


def test_a_full_pool_fails_writes_harms_nothing_and_recovers_after_deletes(tmp_path):
    with Pool.create(str(tmp_path / "p"), 8 * CHUNK, CHUNK, background=False) as pool:
        pool.create_volume("v", 6 * CHUNK)
        pool.write("v", 0, b"1" * 6 * CHUNK)
        pool.create_snapshot("v", "s")
        pool.write("v", 0, b"2" * 2 * CHUNK)  # uses the last two chunks
        with pytest.raises(exception.PoolFull) as raised:
            pool.write("v", 2 * CHUNK, b"3" * 2 * CHUNK)
        assert raised.value.code == 28  # ENOSPC
        assert "full" in str(raised.value)
        assert pool.read("v", 0, 6 * CHUNK) == b"2" * 2 * CHUNK + b"1" * 4 * CHUNK
        assert pool.read("s", 0, 6 * CHUNK) == b"1" * 6 * CHUNK
        with pytest.raises(exception.PoolFull):
            pool.write("v", 3 * CHUNK + 5, b"partial")  # a read-modify-write needs space too
        assert pool.check().clean
        pool.delete("s")
        pool.collect()
        pool.write("v", 2 * CHUNK, b"3" * 2 * CHUNK)
        assert (
            pool.read("v", 0, 6 * CHUNK) == b"2" * 2 * CHUNK + b"3" * 2 * CHUNK + b"1" * 2 * CHUNK
        )
        assert pool.check().clean


def test_everything_survives_close_and_reopen(tmp_path):
    path = str(tmp_path / "p")
    with Pool.create(path, 64 * CHUNK, CHUNK) as pool:
        _two_volumes(pool)
        pool.clone("s", "c", 20 * CHUNK)
        pool.write("c", 19 * CHUNK, b"end")
    with Pool.open(path) as pool:
        assert pool.read("v", 0, 2 * CHUNK) == b"b" * CHUNK + b"a" * CHUNK
        assert pool.read("s", 0, CHUNK) == b"a" * CHUNK
        assert pool.read("c", 19 * CHUNK, 3) == b"end"
        assert pool.check().clean


def test_a_flushed_write_survives_a_power_cut(tmp_path):
    """Copy the files right after a flush, as a power cut would leave them, and open the copy."""
    path, image = str(tmp_path / "p"), str(tmp_path / "image")
    pool = Pool.create(path, 64 * CHUNK, CHUNK, commit_interval=3600)
    try:
        pool.create_volume("v", 8 * CHUNK)
        pool.write("v", 0, b"flushed" * 100)
        pool.create_snapshot("v", "s")
        pool.write("v", 5 * CHUNK, b"also flushed")
        pool.flush()
        pool.write("v", 6 * CHUNK, b"not flushed")  # may or may not survive
        shutil.copytree(path, image)
    finally:
        pool.close()
    os.unlink(os.path.join(image, "lock"))
    with Pool.open(image) as copy:
        assert copy.read("v", 0, 700) == b"flushed" * 100
        assert copy.read("v", 5 * CHUNK, 12) == b"also flushed"
        assert copy.read("s", 5 * CHUNK, 12) == bytes(12)
        assert copy.read("v", 6 * CHUNK, 11) in (b"not flushed", bytes(11))
        assert copy.check().clean


def test_threads_on_different_volumes_and_the_same_volume(tmp_path):
    with Pool.create(str(tmp_path / "p"), 4096 * CHUNK, CHUNK, node_bits=3) as pool:
        for n in range(4):
            pool.create_volume(f"v{n}", 64 * CHUNK)
        errors = []

        def worker(volume, seed):
            try:
                for i in range(200):
                    block = (seed * 7 + i * 13) % 64
                    pool.write(volume, block * CHUNK, bytes([seed]) * CHUNK)
                    if i % 50 == 0:
                        pool.create_snapshot(volume, f"{volume}-{seed}-{i}")
                    assert pool.read(volume, block * CHUNK, CHUNK) in {
                        bytes([s]) * CHUNK for s in range(8)
                    }
            except Exception as err:  # reported by the main thread
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(f"v{n % 4}", n)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        for n in range(4):
            data = pool.read(f"v{n}", 0, 64 * CHUNK)
            for block in range(64):
                assert data[block * CHUNK : (block + 1) * CHUNK] in {
                    bytes([s]) * CHUNK for s in (n, n + 4, 0)
                }
        assert pool.check().clean


def test_a_second_process_is_refused(tmp_path):
    path = str(tmp_path / "p")
    with Pool.create(path, 16 * CHUNK, CHUNK):
        result = subprocess.run(
            [sys.executable, "-c", f"from evs_driver.rowstore import Pool; Pool.open({path!r})"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0
        assert "is in use by another process (pid" in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from evs_driver.rowstore import Pool; Pool.open({path!r}).close()",
        ],
        check=False,
    )
    assert result.returncode == 0


def test_in_place_writes_share_the_device_but_allocating_writes_wait(pool):
    pool.create_volume("v", 4 * CHUNK)
    pool.write("v", 0, b"a" * CHUNK)
    assert pool._devices.get("v").remapping
    # The write after one that remapped takes the device alone (a hint); one that found
    # everything in place lets the next ones share it again.
    pool.write("v", 1, b"a")
    assert not pool._devices.get("v").remapping
    in_place, allocating = threading.Event(), threading.Event()
    with pool._devices.get("v").lock.read():  # as a read in the middle of its I/O holds it
        threading.Thread(target=lambda: (pool.write("v", 10, b"b"), in_place.set())).start()
        assert in_place.wait(10)
        threading.Thread(target=lambda: (pool.write("v", CHUNK, b"c"), allocating.set())).start()
        assert not allocating.wait(0.2)  # a new chunk needs the device alone
    assert allocating.wait(10)
    assert pool.read("v", 0, CHUNK + 1) == b"a" * 10 + b"b" + b"a" * (CHUNK - 11) + b"c"
