"""The NBD server in front of the real rowstore engine: volumes, snapshots, clones."""

import json
import os

import pytest

from evs_driver.nbd import NBDServer
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice
from tests.functional.nbd.nbd_clients import qemu_io, requires, run
from tests.functional.nbd.nbd_wire import CMD_WRITE, EPERM, WireClient

MiB = 1024 * 1024
SIZE = 32 * MiB


@pytest.fixture
def pool(workdir):
    p = Pool.create(os.path.join(workdir, "pool"), capacity=256 * MiB)
    yield p
    p.close()


@pytest.fixture
def served(pool, sock):
    pool.create_volume("v1", SIZE)
    nbd = NBDServer()
    nbd.add_export("v1", lambda: PoolDevice(pool, "v1"), aliases=["id-v1"])
    nbd.listen_unix(sock)
    yield nbd
    nbd.close()


def export(server, pool, name):
    server.add_export(name, lambda: PoolDevice(pool, name))
    return server.uri(name)


@requires("qemu-io")
def test_snapshot_keeps_its_data_while_the_volume_changes(served, pool):
    """The users' example: s1 keeps d1, d2 after d2 changes and d3 is written."""
    v1 = served.uri("v1")
    qemu_io(v1, "write -P 0xd1 0 1M", "write -P 0xd2 1M 1M", "flush")
    pool.create_snapshot("v1", "s1")
    qemu_io(v1, "write -P 0xd3 2M 1M", "write -P 0xd4 1M 1M", "flush")
    s1 = export(served, pool, "s1")
    qemu_io(s1, "read -P 0xd1 0 1M", "read -P 0xd2 1M 1M", "read -P 0 2M 1M", read_only=True)
    qemu_io(v1, "read -P 0xd1 0 1M", "read -P 0xd4 1M 1M", "read -P 0xd3 2M 1M")


def test_snapshot_export_is_read_only(served, pool, sock):
    pool.create_snapshot("v1", "s1")
    served.add_export("s1", lambda: PoolDevice(pool, "s1"))
    c = WireClient(sock)
    size, flags = c.go("s1")
    assert (size, flags & 2) == (SIZE, 2)
    c.request(CMD_WRITE, 0, 4, payload=b"data")
    assert c.reply() == (EPERM, 1)
    c.close()


@requires("nbdinfo")
def test_nbdinfo_on_a_pool_volume(served):
    (info,) = json.loads(run("nbdinfo", "--json", served.uri("id-v1")).stdout)["exports"]
    assert info["export-size"] == SIZE
    assert (info["is_read_only"], info["can_multi_conn"], info["can_trim"]) == (False, True, True)


@requires("nbdcopy", "qemu-img")
def test_nbdcopy_into_a_volume_then_clone_it(served, pool, workdir):
    src = os.path.join(workdir, "random.raw")
    with open(src, "wb") as f:
        f.write(os.urandom(SIZE // 2))
        f.truncate(SIZE)
    run("nbdcopy", "--connections=4", "--requests=64", "--flush", src, served.uri("v1"))
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", src, served.uri("v1"))
    pool.create_snapshot("v1", "s1")
    pool.clone("s1", "c1")
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", src, export(served, pool, "c1"))
    assert pool.check().clean


@requires("qemu-io")
def test_trim_and_zeroes_on_a_pool_volume(served, pool):
    v1 = served.uri("v1")
    qemu_io(v1, "write -P 7 0 4M", "discard 0 1M", "write -z 1M 1M", "flush")
    qemu_io(v1, "read -P 0 0 2M", "read -P 7 2M 2M")
    assert pool.check().clean


# -- BLOCK_STATUS from the engine's mapping ----------------------------------------------
HOLE = 3  # NBD_STATE_HOLE | NBD_STATE_ZERO
CHUNK = 64 * 1024  # the pool's default chunk size


def data_ranges(uri: str) -> list[tuple[int, int]]:
    """(start, length) of every range ``qemu-img map`` reports as data."""
    entries = json.loads(run("qemu-img", "map", "--output=json", uri).stdout)
    return [(e["start"], e["length"]) for e in entries if e["data"]]


def test_pool_device_extents_follow_the_mapping(pool):
    pool.create_volume("v1", SIZE)
    device = PoolDevice(pool, "v1")
    assert device.extents(0, SIZE) == [(SIZE, HOLE)]
    pool.write("v1", CHUNK + 10, b"x")  # maps the whole second chunk
    pool.write("v1", 5 * CHUNK, b"y" * (2 * CHUNK))
    assert device.extents(0, SIZE) == [
        (CHUNK, HOLE),
        (CHUNK, 0),
        (3 * CHUNK, HOLE),
        (2 * CHUNK, 0),
        (SIZE - 7 * CHUNK, HOLE),
    ]
    assert device.extents(CHUNK + 100, 10) == [(10, 0)]
    assert device.extents(100, CHUNK) == [(CHUNK - 100, HOLE), (100, 0)]
    pool.create_snapshot("v1", "s1")
    pool.discard("v1", CHUNK, CHUNK)
    assert PoolDevice(pool, "s1").extents(0, 2 * CHUNK) == [(CHUNK, HOLE), (CHUNK, 0)]
    assert device.extents(0, 3 * CHUNK) == [(3 * CHUNK, HOLE)]  # the volume let it go


def test_one_extents_query_looks_up_a_bounded_number_of_chunks(workdir):
    small = Pool.create(os.path.join(workdir, "small"), capacity=64 * MiB, chunk_size=4096)
    try:
        small.create_volume("big", 512 * MiB)  # 131072 chunks, thinly
        runs = PoolDevice(small, "big").extents(0, 512 * MiB)
        assert runs == [(65536 * 4096, HOLE)]  # EXTENT_CHUNKS; the client asks again
    finally:
        small.close()


@requires("qemu-io", "qemu-img")
def test_qemu_img_map_of_a_pool_volume_and_its_snapshot(served, pool):
    v1 = served.uri("v1")
    qemu_io(v1, "write -P 1 0 1M", "write -P 2 10M 64k", "flush")
    pool.create_snapshot("v1", "s1")
    qemu_io(v1, "write -P 3 20M 128k", "discard 0 1M", "flush")
    s1 = export(served, pool, "s1")
    assert data_ranges(s1) == [(0, MiB), (10 * MiB, 64 * 1024)]
    assert data_ranges(v1) == [(10 * MiB, 64 * 1024), (20 * MiB, 128 * 1024)]


@requires("qemu-img")
def test_qemu_img_convert_of_a_pool_volume_reads_only_its_data(pool, sock, workdir):
    read = []

    class Counting(PoolDevice):
        def readinto(self, offset, buf):
            read.append(len(buf))
            super().readinto(offset, buf)

    pool.create_volume("v1", SIZE)
    pool.write("v1", 3 * MiB, os.urandom(MiB))
    with NBDServer() as nbd:
        nbd.add_export("v1", lambda: Counting(pool, "v1"))
        nbd.listen_unix(sock)
        copy = os.path.join(workdir, "copy.raw")
        run("qemu-img", "convert", "-O", "raw", nbd.uri("v1"), copy)
    with open(copy, "rb") as f:
        assert f.read() == pool.read("v1", 0, SIZE)
    assert MiB <= sum(read) <= MiB + 4096, sum(read)  # the data plus qemu's format probe
