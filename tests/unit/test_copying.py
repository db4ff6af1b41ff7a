"""The one copy loop on real files and a real pool: holes skipped by the mapping, overlays
and snapshots copied byte for byte, ``copy_file_range`` into plain files, and the
read-and-write path when the kernel cannot copy."""

import os

import pytest

from evs_driver import dataio, fileio
from evs_driver.copying import copy_into
from evs_driver.filedev import FileDevice
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice
from evs_driver.units import KiB, MiB

CHUNK = 64 * KiB


@pytest.fixture
def pool(tmp_path):
    """A pool with volume ``v`` (data, holes, overlays) and its snapshot ``s``; their
    expected bytes are ``pool.expected``."""
    with Pool.create(str(tmp_path / "pool"), 256 * MiB, CHUNK, background=False) as made:
        made.create_volume("v", 12 * MiB + 5 * KiB)  # not a whole number of chunks
        volume = bytearray(12 * MiB + 5 * KiB)
        for offset, length in ((0, 3 * MiB), (5 * MiB + 100, 700 * KiB), (12 * MiB, 5 * KiB)):
            data = os.urandom(length)
            made.write("v", offset, data)
            volume[offset : offset + length] = data
        made.create_snapshot("v", "s")
        snapshot = bytes(volume)
        for offset in (4 * KiB, CHUNK + 8 * KiB, 5 * MiB + 200 * KiB):  # overlays
            made.write("v", offset, b"o" * (4 * KiB))
            volume[offset : offset + 4 * KiB] = b"o" * (4 * KiB)
        made.write("v", 8 * MiB, b"\0" * CHUNK)  # zeros written: mapped data
        made.flush()
        made.expected = {"v": bytes(volume), "s": snapshot}
        yield made


def _kernel_copies(monkeypatch) -> list:
    """Record the byte counts of the kernel copies asked for (``fileio.copy_range``, which
    still runs: it splits each into bounded ``copy_file_range`` calls, see test_fileio)."""
    calls, real = [], fileio.copy_range
    monkeypatch.setattr(fileio, "copy_range", lambda *a: (calls.append(a[4]), real(*a))[1])
    return calls


def _allocated(path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize("name", ["v", "s"])
def test_export_copies_in_the_kernel_byte_for_byte_and_keeps_holes(
    pool, tmp_path, name, monkeypatch
):
    calls = _kernel_copies(monkeypatch)
    image = tmp_path / f"{name}.raw"
    written = dataio.export_file(PoolDevice(pool, name, writable=False), str(image))
    assert image.read_bytes() == pool.expected[name]
    assert calls and max(calls) >= MiB  # whole runs of chunks, not a chunk a call
    device = PoolDevice(pool, name, writable=False)
    assert written == sum(n for n, flags in device.extents(0, device.size) if not flags)
    assert _allocated(image) < 6 * MiB  # the unmapped half stayed holes


def test_export_to_another_file_system_reads_and_writes(pool, monkeypatch):
    """/dev/shm is tmpfs: copy_file_range is not tried across file systems."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(pool.path).st_dev:
        pytest.skip("no second file system at /dev/shm")
    calls = _kernel_copies(monkeypatch)
    image = os.path.join("/dev/shm", f"evs-copy-test-{os.getpid()}.raw")
    try:
        dataio.export_file(PoolDevice(pool, "v", writable=False), image)
        with open(image, "rb") as file:
            assert file.read() == pool.expected["v"]
    finally:
        os.unlink(image)
    assert calls == []


def test_a_kernel_that_refuses_falls_back_for_the_rest(pool, tmp_path, monkeypatch):
    """Fault injection: copy_file_range fails with EXDEV on its second call (the error an
    older kernel or a stacked file system gives), which a real single file system cannot."""
    calls, real = [], os.copy_file_range

    def refuse_after_one(*args):
        calls.append(args[2])
        if len(calls) > 1:
            raise OSError(18, "Invalid cross-device link")
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", refuse_after_one)
    image = tmp_path / "v.raw"
    dataio.export_file(PoolDevice(pool, "v", writable=False), str(image))
    assert image.read_bytes() == pool.expected["v"]
    assert len(calls) == 2  # once refused, the kernel is not asked again


def test_file_to_file_copies_in_the_kernel(tmp_path, monkeypatch):
    source, target = tmp_path / "a.raw", tmp_path / "b.raw"
    data = os.urandom(3 * MiB)
    with open(source, "wb") as file:
        file.truncate(16 * MiB)
        file.seek(9 * MiB)
        file.write(data)
    with open(target, "wb") as file:
        file.truncate(16 * MiB)
    calls = _kernel_copies(monkeypatch)
    with FileDevice(str(source), read_only=True) as src, FileDevice(str(target)) as dst:
        assert copy_into(src, dst, target_is_zero=True) == 3 * MiB
    assert target.read_bytes() == source.read_bytes()
    assert calls == [3 * MiB] and _allocated(target) < 4 * MiB


def test_full_clone_in_one_pool_copies_a_kernel_copy_per_run(pool, monkeypatch):
    calls = _kernel_copies(monkeypatch)
    for name in ("s", "v"):
        copy = f"copy-{name}"
        pool.create_volume(copy, pool.device(name).size)
        source, target = PoolDevice(pool, name, writable=False), PoolDevice(pool, copy)
        assert copy_into(source, target, target_is_zero=True) > 0
        assert pool.read(copy, 0, len(pool.expected[name])) == pool.expected[name]
        assert pool.exclusive_bytes(copy) == pool.device(copy).mapped_bytes  # shares nothing
    # The snapshot's runs (3 MiB, the 11 chunks under 700 KiB, the last 5 KiB) land in
    # consecutive free chunks of the new volume: one copy each.
    assert calls[:3] == [3 * MiB, 11 * CHUNK, 5 * KiB]
    assert pool.check().clean


def test_a_run_copied_into_scattered_free_chunks_splits_where_they_do(pool, monkeypatch):
    pool.create_volume("holes", 8 * CHUNK)
    pool.write("holes", 0, os.urandom(8 * CHUNK))
    for chunk in range(0, 8, 2):
        pool.discard("holes", chunk * CHUNK, CHUNK)
    pool.commit()  # freed chunks are reused from here on, lowest first
    calls = _kernel_copies(monkeypatch)
    pool.create_volume("copy", pool.device("s").size)
    copy_into(PoolDevice(pool, "s", writable=False), PoolDevice(pool, "copy"), target_is_zero=True)
    assert pool.read("copy", 0, len(pool.expected["s"])) == pool.expected["s"]
    assert calls[:5] == [CHUNK] * 4 + [3 * MiB - 4 * CHUNK]  # the four gaps, then the rest
    assert pool.check().clean


def test_a_kernel_that_cannot_copy_within_the_pool_falls_back(pool, monkeypatch):
    """Fault injection: copy_file_range fails with EOPNOTSUPP (as on a file system without
    it), which this machine's ext4 never does; the chunk store reads and writes instead."""
    refused = []

    def cannot(*args):
        refused.append(args)
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "copy_file_range", cannot)
    writes, real = [], os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda *a: (writes.append(len(a[1])), real(*a))[1])
    pool.create_volume("copy", pool.device("v").size)
    copy_into(PoolDevice(pool, "v", writable=False), PoolDevice(pool, "copy"), target_is_zero=True)
    assert len(refused) == 1  # asked once, then never again
    assert max(writes) == CHUNK  # a run is written a chunk at a time (page-cache folios)
    assert pool.read("copy", 0, len(pool.expected["v"])) == pool.expected["v"]
    assert pool.check().clean


def test_a_raw_image_imports_byte_for_byte(pool, tmp_path):
    """Into a pool from a file the loop reads and writes (the pool allocates and maps)."""
    image = tmp_path / "v.raw"
    dataio.export_file(PoolDevice(pool, "v", writable=False), str(image))
    pool.create_volume("copy", pool.device("v").size)
    pool.write("copy", 0, b"x" * CHUNK)  # an import replaces what was there
    dataio.import_file(str(image), PoolDevice(pool, "copy"))
    assert pool.read("copy", 0, len(pool.expected["v"])) == pool.expected["v"]
    assert pool.check().clean
