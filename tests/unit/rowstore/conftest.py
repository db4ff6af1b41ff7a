import time

import pytest

from evs_driver.rowstore import Pool

CHUNK = 4096


def wait_for(condition, what: str) -> None:
    """Poll until ``condition()``; the deadline only bounds a hang, it measures nothing."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def spy_chunk_writes(pool, monkeypatch) -> list:
    """Record ``(position, length)`` of each write to the pool's data file, then do it."""
    calls = []
    write = pool._chunks.write
    monkeypatch.setattr(
        pool._chunks,
        "write",
        lambda position, data: (calls.append((position, len(data))), write(position, data)),
    )
    return calls


@pytest.fixture
def pool(tmp_path):
    """A 4 MiB pool of 4 KiB chunks with fan-out 4 (deep trees at small sizes), no worker."""
    with Pool.create(
        str(tmp_path / "pool"), 1024 * CHUNK, CHUNK, node_bits=2, background=False
    ) as created:
        yield created
