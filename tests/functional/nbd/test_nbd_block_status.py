"""BLOCK_STATUS with real clients: qemu-img map, nbdinfo --map, and copies that skip holes.

The export is a 64 MiB raw file with two allocated ranges; a counting device shows how
many bytes the clients really read.
"""

import filecmp
import json
import os

import pytest

from evs_driver.filedev import FileDevice
from evs_driver.nbd import NBDServer
from tests.functional.nbd.nbd_clients import requires, run

KiB, MiB = 1024, 1024 * 1024
SIZE = 64 * MiB
DATA = [(MiB, 64 * KiB), (40 * MiB, MiB)]  # (offset, length) of what is written
ALLOCATED = sum(length for _, length in DATA)


class Counting(FileDevice):
    """A file device that adds up the bytes it is asked to read."""

    read_bytes = 0

    def readinto(self, offset, buf):
        Counting.read_bytes += len(buf)
        super().readinto(offset, buf)


@pytest.fixture
def sparse_export(workdir):
    path = os.path.join(workdir, "sparse.raw")
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for offset, length in DATA:
            f.seek(offset)
            f.write(os.urandom(length))
    nbd = NBDServer()
    nbd.add_export("vol", lambda: Counting(path, read_only=True), read_only=True)
    nbd.listen_unix(os.path.join(workdir, "map.sock"))
    Counting.read_bytes = 0
    yield nbd.uri("vol"), path
    nbd.close()


def expected_map() -> list[tuple[int, int, bool]]:
    """(start, length, is data) of the whole export."""
    runs, position = [], 0
    for offset, length in DATA:
        runs += [(position, offset - position, False), (offset, length, True)]
        position = offset + length
    return runs + [(position, SIZE - position, False)]


@requires("qemu-img")
def test_qemu_img_map_shows_data_and_holes(sparse_export):
    uri, _path = sparse_export
    entries = json.loads(run("qemu-img", "map", "--output=json", uri).stdout)
    got = [(e["start"], e["length"], e["data"]) for e in entries]
    assert got == expected_map()
    assert all(e["zero"] is not e["data"] for e in entries)
    assert Counting.read_bytes <= 4 * KiB  # no data, only the format probe of the first sector


@requires("nbdinfo")
def test_nbdinfo_map_shows_data_and_holes(sparse_export):
    uri, _path = sparse_export
    lines = run("nbdinfo", "--map", uri).stdout.split("\n")
    got = [tuple(line.split()) for line in lines if line.strip()]
    want = [
        (str(start), str(length), "0", "data")
        if data
        else (str(start), str(length), "3", "hole,zero")
        for start, length, data in expected_map()
    ]
    assert got == want


@requires("qemu-img")
def test_qemu_img_convert_reads_only_the_allocated_part(sparse_export, workdir):
    uri, path = sparse_export
    copy = os.path.join(workdir, "copy.raw")
    run("qemu-img", "convert", "-O", "raw", uri, copy)
    assert filecmp.cmp(path, copy, shallow=False)
    # qemu also probes the first sector for a format signature.
    assert ALLOCATED <= Counting.read_bytes <= ALLOCATED + 4 * KiB, Counting.read_bytes


@requires("nbdcopy")
def test_nbdcopy_reads_only_the_allocated_part(sparse_export, workdir):
    uri, path = sparse_export
    copy = os.path.join(workdir, "copy.raw")
    run("nbdcopy", uri, copy)
    assert filecmp.cmp(path, copy, shallow=False)
    # nbdcopy reads whole requests (256 KiB) around the data it finds.
    assert ALLOCATED <= Counting.read_bytes <= ALLOCATED + 2 * 256 * KiB, Counting.read_bytes
