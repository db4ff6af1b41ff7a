"""Every write and sync of a pool's files goes through its I/O seam, in the crash-safe order."""

import os
import random

from evs_driver.rowstore import Pool, metastore
from tests.unit.rowstore.conftest import CHUNK
from tests.unit.rowstore.crashstates import FILES, RecordingDisk, crash_state


def _recorded_pool(tmp_path):
    path = str(tmp_path / "p")
    Pool.create(path, 64 * CHUNK, CHUNK, node_bits=2, background=False).close()
    disk = RecordingDisk()
    pool = Pool.open(path, background=False, disk=disk)
    disk.start(path)
    return path, disk, pool


def test_replaying_the_log_rebuilds_the_files_exactly(tmp_path):
    path, disk, pool = _recorded_pool(tmp_path)
    pool.create_volume("v", 16 * CHUNK)
    pool.write("v", 0, b"a" * 5 * CHUNK)
    pool.create_snapshot("v", "s")
    pool.write("v", 100, b"b" * 300)  # an overlay
    pool.discard("v", 2 * CHUNK, 2 * CHUNK)
    pool.flush()
    disk.stop()
    images = crash_state(disk.base, disk.events, len(disk.events), random.Random(0), "synced")
    for name in FILES:
        with open(os.path.join(path, name), "rb") as file:
            assert bytes(images[name]) == file.read(), name
    pool.close()


def test_each_commit_syncs_the_data_then_the_metadata_log(tmp_path):
    _, disk, pool = _recorded_pool(tmp_path)
    pool.create_volume("v", 16 * CHUNK)
    pool.write("v", 0, b"a" * CHUNK)
    pool.flush()
    disk.stop()
    events = disk.events
    data_sync = max(i for i, e in enumerate(events) if e == ("sync", "data"))
    log_sync = max(i for i, e in enumerate(events) if e == ("sync", "metadata.sqlite-wal"))
    assert data_sync < log_sync
    # The flush's log frames reach the disk between the data sync and the log sync.
    frames = [i for i, e in enumerate(events) if e[0] == "write" and e[1].endswith("-wal")]
    assert any(data_sync < i < log_sync for i in frames)
    assert all(e[1] != "data" for e in events[data_sync + 1 : log_sync])
    pool.close()


def _reopened_with_a_volume(tmp_path):
    """A pool holding volume ``v`` (one chunk written), closed and opened again recorded."""
    path, _, pool = _recorded_pool(tmp_path)
    pool.create_volume("v", 16 * CHUNK)
    pool.write("v", 0, b"a" * CHUNK)
    pool.close()
    disk = RecordingDisk()
    pool = Pool.open(path, background=False, disk=disk)
    disk.start(path)
    return disk, pool


def test_opening_reading_and_closing_a_pool_write_and_sync_nothing(tmp_path):
    disk, pool = _reopened_with_a_volume(tmp_path)
    assert pool.read("v", 0, CHUNK) == b"a" * CHUNK
    pool.usage(), pool.exclusive_bytes("v"), pool.check(), pool.flush()
    pool.close()
    assert disk.events == []


def test_a_snapshot_syncs_only_the_metadata_log_once(tmp_path):
    disk, pool = _reopened_with_a_volume(tmp_path)
    pool.create_snapshot("v", "s")
    pool.close()
    assert [e for e in disk.events if e[0] == "sync"] == [("sync", "metadata.sqlite-wal")]
    assert all(e[1] != "data" for e in disk.events)


def test_a_checkpoint_empties_the_log_durably_before_it_is_written_again(tmp_path, monkeypatch):
    # SQLite (synchronous=OFF) would overwrite the log in place from its header on: a power
    # cut could then leave the old header before a prefix of the old, already copied frames.
    monkeypatch.setattr(metastore, "CHECKPOINT_BYTES", 16 << 10)
    _, disk, pool = _recorded_pool(tmp_path)
    for n in range(8):
        pool.create_volume(f"v{n}", 16 * CHUNK)
    disk.stop()
    pool.close()
    events = disk.events
    database_syncs = [i for i, e in enumerate(events) if e == ("sync", "metadata.sqlite")]
    assert database_syncs
    for i in database_syncs:
        assert events[i + 1 : i + 3] == [
            ("truncate", "metadata.sqlite-wal", 0),
            ("sync", "metadata.sqlite-wal"),
        ]
