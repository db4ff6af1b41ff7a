"""A full file system under the pool: ENOSPC everywhere, nothing lost, usable once space is back."""

import contextlib
import errno
import os
import subprocess

import pytest

from evs_driver import exception
from evs_driver.rowstore import Pool, metastore
from tests.unit.rowstore.conftest import CHUNK


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs (root only): the pool's file system, small enough to fill."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        reason = f"cannot mount a tmpfs here: {result.stderr.strip()}"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    yield str(mount)
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: str) -> str:
    """Take every free byte of the file system; return the filler's path."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, bytes(4096))
    os.close(fd)
    return filler


def test_writes_flush_and_control_operations_report_enospc_and_recover(small_fs):
    path = os.path.join(small_fs, "pool")
    pool = Pool.create(path, 2048 * CHUNK, CHUNK, node_bits=2, background=False)  # 8 MiB, sparse
    try:
        pool.create_volume("v", 2048 * CHUNK)
        pool.write("v", 0, b"kept" * CHUNK)
        pool.flush()
        # Many new chunks under a fan-out of 4: a commit with many new nodes, left pending.
        for n in range(4, 160):
            pool.write("v", n * CHUNK, bytes([n]) * CHUNK)
        filler = _fill(small_fs)

        with pytest.raises(exception.FileSystemFull) as raised:
            pool.write("v", 1000 * CHUNK, b"no room" * CHUNK)
        assert raised.value.code == errno.ENOSPC
        assert f"data file {path}/data" in str(raised.value)
        with pytest.raises(exception.FileSystemFull) as raised:
            pool.flush()  # NBD maps the code: FLUSH fails with ENOSPC, not EIO
        assert raised.value.code == errno.ENOSPC
        assert f"metadata file {path}/metadata.sqlite" in str(raised.value)
        with pytest.raises(exception.PoolFull):
            pool.create_snapshot("v", "s")
        assert [d.name for d in pool.devices()] == ["v"]

        os.unlink(filler)
        pool.flush()
        pool.create_snapshot("v", "s")
        pool.write("v", 1000 * CHUNK, b"room again")
        pool.flush()
        assert pool.check().clean
    finally:
        pool.close()
    with Pool.open(path, background=False) as again:
        assert again.read("v", 0, 4 * CHUNK) == b"kept" * CHUNK
        assert again.read("v", 159 * CHUNK, CHUNK) == bytes([159]) * CHUNK
        assert again.read("v", 1000 * CHUNK, 10) == b"room again"
        assert [d.name for d in again.devices()] == ["v", "s"]
        assert again.check().clean


def test_a_failed_data_sync_reports_enospc_and_commits_nothing(pool, monkeypatch):
    # Fault injection: ENOSPC from fdatasync comes from file systems that allocate at
    # writeback (NFS, thin devices); tmpfs and ext4 report it at write time instead.
    pool.create_volume("v", 8 * CHUNK)
    pool.write("v", 0, b"a" * CHUNK)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", no_space)
    with pytest.raises(exception.FileSystemFull) as raised:
        pool.flush()
    assert raised.value.code == errno.ENOSPC
    monkeypatch.setattr(os, "fdatasync", real)
    pool.flush()
    assert pool.read("v", 0, CHUNK) == b"a" * CHUNK
    assert pool.check().clean


def _operations(pool):
    return {
        "create_volume": lambda: pool.create_volume("new", 4 * CHUNK),
        "create_snapshot": lambda: pool.create_snapshot("v", "s2"),
        "clone": lambda: pool.clone("s", "c", 64 * CHUNK),
        "revert": lambda: pool.revert("v", "s"),
        "extend": lambda: pool.extend("v", 400 * CHUNK),
        "delete": lambda: pool.delete("s"),
    }


@pytest.mark.parametrize("operation", list(_operations(None)))
def test_a_control_operation_whose_commit_fails_has_no_effect(pool, monkeypatch, operation):
    # Fault injection: the commit of exactly this operation fails as a full disk makes it.
    pool.create_volume("v", 16 * CHUNK)
    pool.write("v", 0, b"1" * 16 * CHUNK)
    pool.create_snapshot("v", "s")
    pool.write("v", 0, b"2" * CHUNK)  # pending: commits before the operation starts
    before_devices = pool.devices()
    real_save = metastore.MetaStore.save
    calls = []

    def save_then_fail(meta, change):
        calls.append(change)
        if len(calls) == 2:
            raise exception.FileSystemFull(pool=pool.path, detail="injected")
        real_save(meta, change)

    monkeypatch.setattr(metastore.MetaStore, "save", save_then_fail)
    with pytest.raises(exception.FileSystemFull):
        _operations(pool)[operation]()
    monkeypatch.setattr(metastore.MetaStore, "save", real_save)
    assert pool.devices() == before_devices
    assert pool.read("v", 0, 2 * CHUNK) == b"2" * CHUNK + b"1" * CHUNK
    assert pool.check().clean
    _operations(pool)[operation]()  # and the retry does it
    assert pool.check().clean
    pool.collect()
    assert pool.check().clean
