"""The diff stream: a seeded random workload's streams rebuild each snapshot from an older
one, byte for byte, and a stream that was cut, altered or mislabelled is refused."""

import io
import random

import pytest

from evs_driver import diffstream, exception
from evs_driver.rowstore import Pool

CHUNK = 4096
SIZE = 96 * CHUNK


def _stream(pool, old, new) -> bytes:
    """The stream from ``old`` (None: full) to ``new``, made as ``evs snapshot export`` does."""
    out = io.BytesIO()
    header = {
        "format": "evs-diff",
        "volume": {"id": "v"},
        "from": old and {"id": old},
        "to": {"id": new, "size": pool.device(new).size},
    }
    writer = diffstream.StreamWriter(out, header)
    runs, _ = pool.diff(old, new)
    for offset, length, kind in runs:
        if kind == "zero":
            writer.zero(offset, length)
        else:
            writer.data(offset, pool.read(new, offset, length))
    writer.finish()
    return out.getvalue()


def _apply(pool, stream: bytes, target: str) -> list[str]:
    kinds = []
    for record in diffstream.StreamReader(io.BytesIO(stream), "test").records():
        if record.data is None:
            pool.discard(target, record.offset, record.length)
            kinds.append("zero")
        else:
            pool.write(target, record.offset, record.data)
            kinds.append("data")
    return kinds


@pytest.fixture
def history(tmp_path):
    """A volume after 300 seeded random writes, whole-chunk discards and partial
    discards, with a snapshot every 30 steps (s0..s9)."""
    rng = random.Random(1616)
    pool = Pool.create(str(tmp_path / "p"), 8192 * CHUNK, CHUNK, node_bits=2, background=False)
    pool.create_volume("v", SIZE)
    for step in range(300):
        action = rng.random()
        if action < 0.6:
            offset = rng.randrange(SIZE - 1)
            length = rng.randint(1, min(SIZE - offset, 3 * CHUNK))
            pool.write("v", offset, rng.randbytes(length))
        elif action < 0.8:
            first = rng.randrange(96)
            count = rng.randint(1, min(8, 96 - first))
            pool.discard("v", first * CHUNK, count * CHUNK)
        else:
            offset = rng.randrange(SIZE - 1)
            pool.discard("v", offset, rng.randint(1, min(SIZE - offset, CHUNK)))
        if step % 30 == 29:
            pool.create_snapshot("v", f"s{step // 30}")
    yield pool
    pool.close()


def test_every_stream_rebuilds_its_snapshot_from_the_older_one(history):
    pool, seen = history, set()
    for new in range(10):
        for old in [None, *range(new)]:
            base = None if old is None else f"s{old}"
            stream = _stream(pool, base, f"s{new}")
            if base is None:
                pool.create_volume("copy", SIZE)
            else:
                pool.clone(base, "copy", SIZE)
            seen.update(_apply(pool, stream, "copy"))
            assert pool.read("copy", 0, SIZE) == pool.read(f"s{new}", 0, SIZE), (old, new)
            pool.delete("copy")
            pool.collect()
    assert seen == {"data", "zero"}  # both kinds of record were exercised
    assert pool.check().clean


def test_a_stream_that_was_tampered_with_is_refused(history):
    stream = _stream(history, "s2", "s7")
    assert len(stream) > 1000
    cases = {
        "cut short": stream[:-10],
        "checksum": stream[:200] + bytes([stream[200] ^ 1]) + stream[201:],
        "magic": b"X" + stream[1:],
        "after its end": stream + b"\0",
    }
    for expected, bad in cases.items():
        with pytest.raises(exception.DiffStreamError, match=expected):
            list(diffstream.StreamReader(io.BytesIO(bad), "bad").records())


def test_a_header_without_what_an_import_needs_is_refused():
    for header in ({"format": "other"}, {"format": "evs-diff", "volume": {"id": "v"}}):
        out = io.BytesIO()
        diffstream.StreamWriter(out, header).finish()
        with pytest.raises(exception.DiffStreamError, match="header"):
            diffstream.StreamReader(io.BytesIO(out.getvalue()), "bad")


def test_the_writer_refuses_extents_out_of_order():
    writer = diffstream.StreamWriter(io.BytesIO(), {})
    writer.data(100, b"x" * 10)
    with pytest.raises(ValueError):
        writer.zero(50, 10)
