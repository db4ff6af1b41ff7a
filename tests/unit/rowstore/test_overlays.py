"""Overlays: the first small write after a snapshot writes its blocks, not a whole chunk."""

import contextlib
import sqlite3
import threading

import pytest

from evs_driver import exception
from evs_driver.rowstore import Pool, overlays
from tests.unit.rowstore.conftest import CHUNK, spy_chunk_writes

BLOCK = CHUNK // overlays.BLOCKS


def _old_and_snapshot(pool):
    pool.create_volume("v", 4 * CHUNK)
    pool.write("v", 0, b"o" * 4 * CHUNK)
    pool.create_snapshot("v", "s")


@pytest.mark.parametrize(
    "offset, length",
    [(0, BLOCK), (3 * BLOCK, 2 * BLOCK), (BLOCK + 7, 10), (BLOCK - 3, 6), (CHUNK - 1, 1)],
)
def test_a_small_write_after_a_snapshot_writes_only_its_blocks(pool, monkeypatch, offset, length):
    _old_and_snapshot(pool)
    calls = spy_chunk_writes(pool, monkeypatch)
    pool.write("v", offset, b"n" * length)
    touched = overlays.block_mask(BLOCK, offset, length).bit_count() * BLOCK
    assert sum(n for _, n in calls) == touched < CHUNK
    expected = bytearray(b"o" * 4 * CHUNK)
    expected[offset : offset + length] = b"n" * length
    assert pool.read("v", 0, 4 * CHUNK) == expected
    assert pool.read("s", 0, 4 * CHUNK) == b"o" * 4 * CHUNK
    assert not pool.check().problems


def test_an_overlay_survives_reopening(pool):
    _old_and_snapshot(pool)
    pool.write("v", BLOCK + 1, b"n")
    pool.flush()
    path = pool.path
    pool.close()
    with Pool.open(path, background=False) as again:
        assert again.read("v", 0, 2 * BLOCK) == b"o" * (BLOCK + 1) + b"n" + b"o" * (BLOCK - 2)
        assert again.read("s", 0, CHUNK) == b"o" * CHUNK
        assert not again.check().problems


def test_filling_every_block_makes_a_plain_chunk_and_lets_the_base_go(pool):
    _old_and_snapshot(pool)
    used = pool.usage().used_bytes
    for block in range(overlays.BLOCKS):
        pool.write("v", block * BLOCK, bytes([block]) * BLOCK)
    assert not pool._datamap.overlay_rows()
    assert pool.usage().used_bytes == used + CHUNK
    pool.delete("s")
    pool.collect()
    assert pool.usage().used_bytes == used
    assert pool.read("v", 0, CHUNK) == b"".join(bytes([b]) * BLOCK for b in range(16))
    assert not pool.check().problems


def _an_unshared_overlay(pool) -> None:
    """Volume ``v``'s chunk 0 an overlay (blocks 0 and 15 valid) that only ``v`` maps."""
    _old_and_snapshot(pool)
    pool.write("v", 0, b"n" * BLOCK)  # redirects: chunk 0 becomes an overlay
    pool.write("v", 15 * BLOCK, b"n" * BLOCK)  # (after a redirect the next write goes alone)


@contextlib.contextmanager
def _beside_a_reader(pool, then):
    """Run ``then()`` in a thread while a read holds volume ``v``; yield the event it sets."""
    done = threading.Event()
    with pool._devices.get("v").lock.read():  # as a read in the middle of its I/O holds it
        threading.Thread(target=lambda: (then(), done.set())).start()
        yield done
    assert done.wait(10)


def test_whole_blocks_written_into_an_unshared_overlay_share_the_device(pool):
    _an_unshared_overlay(pool)
    with _beside_a_reader(pool, lambda: pool.write("v", 2 * BLOCK, b"2" * BLOCK)) as done:
        assert done.wait(10)
    assert pool._datamap.overlay(_chunk_of(pool, "v", 0))[1] == 0b1000000000000101
    assert pool.read("v", 0, 3 * BLOCK) == b"n" * BLOCK + b"o" * BLOCK + b"2" * BLOCK
    assert pool.read("s", 0, CHUNK) == b"o" * CHUNK
    assert not pool.check().problems


@pytest.mark.parametrize(
    "why, writes",
    [
        ("part of a block: the rest is read and written back", [(BLOCK + 7, 10)]),
        ("the last block: completing frees the base", [(b * BLOCK, BLOCK) for b in range(1, 15)]),
    ],
)
def test_writes_into_an_overlay_that_read_or_free_wait_for_the_device(
    pool, monkeypatch, why, writes
):
    def write_all():
        for offset, length in writes:
            pool.write("v", offset, b"w" * length)

    _an_unshared_overlay(pool)
    calls = spy_chunk_writes(pool, monkeypatch)
    with _beside_a_reader(pool, write_all) as done:
        assert not done.wait(0.2), why
    assert len(calls) == len(writes)  # each found it needs the device before writing
    expected = bytearray(b"n" * BLOCK + b"o" * (14 * BLOCK) + b"n" * BLOCK)
    for offset, length in writes:
        expected[offset : offset + length] = b"w" * length
    assert pool.read("v", 0, CHUNK) == expected
    assert pool.read("s", 0, CHUNK) == b"o" * CHUNK
    assert not pool.check().problems


def test_shared_writes_that_together_complete_an_overlay_complete_it_alone(pool, monkeypatch):
    """Two writes of the last two blocks each plan beside the other; the one that marks its
    block last would complete the overlay, so it writes again with the device alone.

    Holding the first write inside its data write is injected (a patched ChunkStore.write),
    as no real disk can be made to stall one write on demand."""
    _old_and_snapshot(pool)
    pool.write("v", 0, b"n" * 14 * BLOCK)  # an overlay with blocks 0-13 valid
    pool.write("v", 1, b"n")  # (after a redirect the next write goes alone)
    overlay = _chunk_of(pool, "v", 0)
    held, release = threading.Event(), threading.Event()
    write = pool._chunks.write

    def held_write(position, data):
        if position == overlay * CHUNK + 14 * BLOCK and not held.is_set():
            held.set()
            assert release.wait(10)
        write(position, data)

    monkeypatch.setattr(pool._chunks, "write", held_write)
    completing_alone = []  # for each completion: whether the writer held the device alone
    extend, lock = pool._datamap.extend_overlay, pool._devices.get("v").lock
    monkeypatch.setattr(
        pool._datamap,
        "extend_overlay",
        lambda chunk, new_valid: (
            pool._datamap.completes(chunk, new_valid) and completing_alone.append(lock._writer),
            extend(chunk, new_valid),
        ),
    )
    first = threading.Thread(target=pool.write, args=("v", 14 * BLOCK, b"e" * BLOCK))
    first.start()
    assert held.wait(10)
    pool.write("v", 15 * BLOCK, b"f" * BLOCK)  # shares the device with the held write
    assert pool._datamap.overlay(overlay)[1] == 0b1011111111111111
    release.set()
    first.join(10)
    assert not first.is_alive()
    assert completing_alone == [True]
    assert pool._datamap.overlay(overlay) is None  # completed: a plain chunk
    assert pool.read("v", 0, CHUNK) == b"n" * 14 * BLOCK + b"e" * BLOCK + b"f" * BLOCK
    assert pool.read("s", 0, CHUNK) == b"o" * CHUNK
    assert not pool.check().problems


def _chunk_of(pool, name, vchunk):
    """The data chunk the device maps at ``vchunk``."""
    (entry,) = pool._reader.entries(pool._devices.get(name), vchunk, 1)
    return entry - 1


def test_deleting_the_snapshot_keeps_the_base_for_the_overlay(pool):
    _old_and_snapshot(pool)
    pool.write("v", 5, b"n")
    pool.delete("s")
    pool.collect()
    assert pool.read("v", 0, 8) == b"ooooonoo"
    assert pool.read("v", CHUNK - 4, 4) == b"oooo"
    # Deleting the volume frees the overlay and the base it alone holds.
    assert pool.exclusive_bytes("v") == 5 * CHUNK
    used = pool.usage().used_bytes
    pool.delete("v")
    pool.collect()
    assert used - pool.usage().used_bytes == 5 * CHUNK == used
    assert not pool.check().problems


def test_writing_a_snapshotted_overlay_makes_an_overlay_of_it(pool, monkeypatch):
    _old_and_snapshot(pool)
    pool.write("v", 0, b"1")
    ((first, (base, _)),) = pool._datamap.overlay_rows().items()
    pool.create_snapshot("v", "s1")
    calls = spy_chunk_writes(pool, monkeypatch)
    pool.write("v", 2 * BLOCK, b"2")
    # Only the written block reaches the new chunk: block 0 stays in the first overlay.
    assert sum(n for _, n in calls) == BLOCK
    (second,) = set(pool._datamap.overlay_rows()) - {first}
    assert pool._datamap.overlay_rows()[second] == (first, 0b100)
    assert pool._datamap.overlay_rows()[first] == (base, 0b1)
    assert pool.read("v", 0, 2 * BLOCK + 1) == b"1" + b"o" * (2 * BLOCK - 1) + b"2"
    assert pool.read("s1", 0, 2 * BLOCK + 1) == b"1" + b"o" * 2 * BLOCK
    assert pool.read("s", 0, 2 * BLOCK + 1) == b"o" * (2 * BLOCK + 1)
    pool.delete("s1")
    pool.delete("s")
    pool.collect()
    # The volume still reads through both levels; nothing else holds them.
    assert sorted(pool._datamap.overlay_rows()) == sorted([first, second])
    assert pool.exclusive_bytes("v") == 6 * CHUNK
    assert pool.read("v", 0, 2 * BLOCK + 1) == b"1" + b"o" * (2 * BLOCK - 1) + b"2"
    assert not pool.check().problems
    pool.delete("v")
    pool.collect()
    assert not pool._datamap.overlay_rows() and pool.usage().used_bytes == 0
    assert not pool.check().problems


def test_rounds_of_snapshot_then_write_stack_overlays_up_to_the_limit_then_copy(pool, monkeypatch):
    """Each round writes one block; past the limit one write copies the chunk as the
    volume sees it into a plain chunk, and every snapshot keeps its data."""
    _old_and_snapshot(pool)
    rounds = 2 * overlays.MAX_DEPTH + 1
    written = []
    for n in range(rounds):
        calls = spy_chunk_writes(pool, monkeypatch)
        pool.write("v", n * BLOCK + 1, bytes([n + 1]))
        monkeypatch.undo()
        (entry,) = pool._reader.entries(pool._devices.get("v"), 0, 1)
        depth = len(pool._datamap.chain(entry - 1)) - 1
        written.append(sum(n for _, n in calls) // BLOCK)
        assert depth == (n + 1) % (overlays.MAX_DEPTH + 1)
        pool.create_snapshot("v", f"r{n}")
    # One block a round, but the round after each full chain copies the whole chunk.
    assert written == [1, 1, 1, 1, overlays.BLOCKS, 1, 1, 1, 1]
    for n in range(rounds):
        expected = bytearray(b"o" * CHUNK)
        for k in range(n + 1):
            expected[k * BLOCK + 1] = k + 1
        assert pool.read(f"r{n}", 0, CHUNK) == expected
    assert pool.read("v", 0, CHUNK) == expected
    assert pool.read("s", 0, CHUNK) == b"o" * CHUNK
    assert not pool.check().problems
    for n in range(rounds):
        pool.delete(f"r{n}")
    pool.delete("s")
    pool.collect()
    assert pool.read("v", 0, CHUNK) == expected
    assert not pool.check().problems


def test_reverting_and_cloning_see_overlays_like_any_chunk(pool):
    _old_and_snapshot(pool)
    pool.write("v", 3, b"n")
    pool.create_snapshot("v", "s1")
    pool.clone("s1", "c")
    pool.revert("v", "s")
    assert pool.read("v", 0, 5) == b"ooooo"
    assert pool.read("c", 0, 5) == b"ooono"
    pool.write("c", 4, b"m")  # c shares the overlay with s1: redirected
    assert pool.read("c", 0, 5) == b"ooonm"
    assert pool.read("s1", 0, 5) == b"ooono"
    assert not pool.check().problems


def test_discarding_part_of_an_overlay_reads_zeros_there(pool):
    _old_and_snapshot(pool)
    pool.write("v", 0, b"n")
    pool.discard("v", 10, 20)
    assert pool.read("v", 0, 40) == b"n" + b"o" * 9 + bytes(20) + b"o" * 10
    pool.discard("v", 0, CHUNK)
    assert pool.read("v", 0, CHUNK) == bytes(CHUNK)
    assert not pool._datamap.overlay_rows()
    assert not pool.check().problems


def test_the_checker_reports_a_broken_overlay_row(pool):
    _old_and_snapshot(pool)
    pool.write("v", 0, b"n")
    pool.flush()
    ((chunk, (base, valid)),) = pool._datamap.overlay_rows().items()
    db = sqlite3.connect(pool._meta.path)
    with db:
        db.execute("UPDATE overlays SET valid = ? WHERE chunk = ?", (overlays.FULL, chunk))
        db.execute("INSERT INTO overlays VALUES (?, ?, 1)", (base, chunk))
    db.close()
    problems = "\n".join(pool.check_committed().problems)
    assert f"overlay chunk {chunk} has valid-block mask" in problems
    assert f"overlay chunk {base} has a chain of bases deeper than" in problems  # a cycle
    assert "double reference" in problems


def test_a_pool_of_a_newer_format_is_refused(tmp_path):
    path = str(tmp_path / "pool")
    Pool.create(path, 16 * CHUNK, CHUNK, background=False).close()
    db = sqlite3.connect(f"{path}/metadata.sqlite")
    with db:
        db.execute("UPDATE pool SET value = 99 WHERE key = 'format_version'")
    db.close()
    with pytest.raises(exception.InvalidPool, match="format version 99 is newer"):
        Pool.open(path)


def test_a_format_1_pool_is_upgraded_when_opened(tmp_path):
    path = str(tmp_path / "pool")
    with Pool.create(path, 16 * CHUNK, CHUNK, background=False) as pool:
        _old_and_snapshot(pool)
    db = sqlite3.connect(f"{path}/metadata.sqlite")
    with db:
        db.execute("DROP TABLE overlays")
        db.execute("UPDATE pool SET value = 1 WHERE key = 'format_version'")
    db.close()
    with Pool.open(path, background=False) as pool:
        pool.write("v", 1, b"n")
        assert pool.read("v", 0, 3) == b"ono"
        assert not pool.check().problems
