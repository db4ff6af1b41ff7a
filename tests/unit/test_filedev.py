"""FileDevice: a raw file as a BlockDevice (the NBD tests' and benchmark's device)."""

import os

import pytest

from evs_driver import exception
from evs_driver.filedev import FileDevice
from evs_driver.nbd.metacontext import MAX_EXTENTS

SIZE = 1024 * 1024


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "disk.raw"
    with open(p, "wb") as f:
        f.truncate(SIZE)
    return str(p)


@pytest.fixture
def dev(path):
    d = FileDevice(path)
    yield d
    d.close()


def test_size_and_mode(dev, path):
    assert (dev.size, dev.read_only, dev.can_multi_conn) == (SIZE, False, True)
    ro = FileDevice(path, read_only=True)
    assert ro.read_only
    ro.close()


def test_write_read_and_readinto(dev, path):
    dev.write(10, b"hello", fua=True)
    dev.write(SIZE - 3, memoryview(b"end"))
    assert dev.read(8, 9) == b"\0\0hello\0\0"
    buf = bytearray(3)
    dev.readinto(SIZE - 3, memoryview(buf))
    assert buf == b"end"
    dev.flush()
    with open(path, "rb") as f:
        assert f.read()[10:15] == b"hello"


def test_discard_punches_a_hole(dev, path):
    dev.write(0, b"\xff" * SIZE)
    dev.flush()
    dev.discard(4096, 65536)
    dev.write_zeroes(128 * 1024, 5)
    assert dev.read(0, 4096) == b"\xff" * 4096
    assert dev.read(4096, 65536) == bytes(65536)
    assert dev.read(128 * 1024, 6) == bytes(5) + b"\xff"
    assert os.stat(path).st_blocks * 512 < SIZE  # space was given back
    assert os.path.getsize(path) == SIZE


def test_discard_falls_back_to_writing_zeros(dev, monkeypatch):
    # Fault injection: this machine's file system supports hole punching, so pretend not.
    dev._can_punch = False
    dev.write(0, b"\xff" * 8192)
    dev.discard(100, 5000)
    assert dev.read(0, 8192) == b"\xff" * 100 + bytes(5000) + b"\xff" * 3092


@pytest.mark.parametrize("offset,length", [(SIZE, 1), (SIZE - 1, 2), (-1, 1), (0, SIZE + 1)])
def test_out_of_range_changes_nothing(dev, path, offset, length):
    with pytest.raises(exception.OutOfRange):
        dev.read(offset, length)
    with pytest.raises(exception.OutOfRange):
        dev.write(offset, b"x" * length)
    with pytest.raises(exception.OutOfRange):
        dev.discard(offset, length)
    assert os.path.getsize(path) == SIZE


def test_read_only_refuses_changes(path):
    dev = FileDevice(path, read_only=True)
    for call in (
        lambda: dev.write(0, b"x"),
        lambda: dev.discard(0, 1),
        lambda: dev.write_zeroes(0, 1),
    ):
        with pytest.raises(exception.ReadOnlyDevice):
            call()
    dev.close()
    dev.close()  # idempotent


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileDevice(str(tmp_path / "nope"))


def test_short_file_reads_zeros_past_its_end(dev, path):
    os.truncate(path, 100)  # shrunk behind the device's back
    assert dev.read(90, 20) == bytes(20)


def test_extents_follow_the_file_systems_holes(dev, path):
    dev.write(64 * 1024, b"d" * 4096)
    runs = dev.extents(0, SIZE)
    if runs == [(SIZE, 0)]:
        pytest.skip("this file system does not report holes (SEEK_DATA)")
    assert runs == [(65536, 3), (4096, 0), (SIZE - 69632, 3)]
    assert dev.extents(65536 + 100, 10) == [(10, 0)]
    assert sum(length for length, _ in dev.extents(1000, 70000)) == 70000
    dev.discard(64 * 1024, 4096)
    assert dev.extents(0, SIZE) == [(SIZE, 3)]


def test_extents_out_of_range(dev):
    with pytest.raises(exception.OutOfRange):
        dev.extents(SIZE - 1, 2)


def test_extents_stop_at_the_limit_of_one_query(tmp_path):
    path = tmp_path / "striped.raw"
    with open(path, "wb") as f:
        f.truncate(4096 * 3000)
        for block in range(0, 3000, 2):
            f.seek(block * 4096)
            f.write(b"s" * 4096)
    dev = FileDevice(str(path), read_only=True)
    runs = dev.extents(0, dev.size)
    if runs == [(dev.size, 0)]:
        pytest.skip("this file system does not report holes (SEEK_DATA)")
    assert len(runs) == MAX_EXTENTS and runs[:2] == [(4096, 0), (4096, 3)]
    dev.close()
