"""Real NBD clients (qemu-io, qemu-img, nbdinfo, nbdcopy, fio) against the in-process server."""

import json
import os
import subprocess

import pytest

from evs_driver.filedev import FileDevice
from tests.functional.nbd.nbd_clients import qemu_io, requires, run
from tests.functional.nbd.nbd_wire import DISK_SIZE


def uri(server, name):
    return server.uri(name)


@requires("qemu-io")
def test_qemu_io_writes_and_verifies_patterns(server):
    u = uri(server, "vol")
    qemu_io(u, "write -P 0xab 0 1M", "write -P 0xcd 1M 64k", "flush")
    qemu_io(u, "read -P 0xab 0 1M", "read -P 0xcd 1M 64k", "read -P 0 2M 1M")


@requires("qemu-io")
def test_qemu_io_by_alias_and_over_tcp(server):
    qemu_io(uri(server, "vol-id"), "write -P 0x5a 4k 4k")
    host, port = server.listen_tcp()
    qemu_io(f"nbd://{host}:{port}/vol", "read -P 0x5a 4k 4k", "read -P 0 0 4k")


@requires("qemu-io")
def test_qemu_io_zero_discard_and_fua(server):
    u = uri(server, "vol")
    qemu_io(u, "write -P 0x77 0 256k", "write -z 0 64k", "discard 64k 64k", "write -f -P 1 128k 4k")
    qemu_io(u, "read -P 0 0 128k", "read -P 1 128k 4k", "read -P 0x77 132k 124k")


@requires("qemu-io")
def test_qemu_io_cannot_write_a_read_only_export(server):
    u = uri(server, "ro")
    output = qemu_io(u, "write -P 1 0 4k", read_only=True, ok=False)
    assert "read-only" in output
    qemu_io(u, "read -P 0 0 4k", read_only=True)


@requires("qemu-io")
def test_unknown_export_is_refused(server):
    result = run("qemu-io", "-f", "raw", "-c", "read 0 1", uri(server, "nope"), ok=False)
    assert result.returncode != 0
    assert "nope" in result.stderr


@requires("nbdinfo")
@pytest.mark.parametrize(
    "name,expected",
    [
        (
            "vol",
            dict(
                is_read_only=False,
                can_flush=True,
                can_fua=True,
                can_trim=True,
                can_zero=True,
                can_multi_conn=True,
            ),
        ),
        (
            "ro",
            dict(
                is_read_only=True,
                can_flush=True,
                can_fua=False,
                can_trim=False,
                can_zero=False,
                can_multi_conn=True,
            ),
        ),
    ],
)
def test_nbdinfo_shows_size_and_flags(server, name, expected):
    info = json.loads(run("nbdinfo", "--json", uri(server, name)).stdout)
    (export,) = info["exports"]
    assert info["protocol"] == "newstyle-fixed"
    assert export["export-size"] == DISK_SIZE
    assert {key: export[key] for key in expected} == expected
    assert export["block_size_minimum"] == 1
    assert export["block_size_preferred"] == 4096
    assert export["block_size_maximum"] == 32 * 1024 * 1024


@requires("nbdinfo")
def test_nbdinfo_without_multi_conn_when_the_device_does_not_share_a_cache(server, disk):
    class PrivateCache(FileDevice):
        can_multi_conn = False

    server.add_export("private", lambda: PrivateCache(disk))
    (export,) = json.loads(run("nbdinfo", "--json", uri(server, "private")).stdout)["exports"]
    assert export["can_multi_conn"] is False
    assert export["can_flush"] is True


@requires("nbdinfo")
def test_nbdinfo_lists_exports(server):
    info = json.loads(run("nbdinfo", "--list", "--json", uri(server, "")).stdout)
    exports = {e["export-name"]: e for e in info["exports"]}
    assert sorted(exports) == ["ro", "vol"]
    assert exports["vol"]["description"] == "a volume"


@requires("qemu-img")
def test_qemu_img_convert_compare_and_info(server, workdir):
    src = os.path.join(workdir, "src.qcow2")
    run("qemu-img", "create", "-f", "qcow2", src, str(DISK_SIZE))
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 3M", "-c", "write -P 0x43 9M 1M", src)
    u = uri(server, "vol")
    run("qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", src, u)
    run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", src, u)
    info = json.loads(run("qemu-img", "info", "--output=json", "-f", "raw", u).stdout)
    assert info["virtual-size"] == DISK_SIZE
    # And back out through the read-only export.
    out = os.path.join(workdir, "out.raw")
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", uri(server, "ro"), out)
    run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", src, out)


@requires("qemu-img")
def test_qemu_img_compare_sees_a_difference(server, workdir):
    other = os.path.join(workdir, "other.raw")
    with open(other, "wb") as f:
        f.truncate(DISK_SIZE)
        f.seek(5000)
        f.write(b"x")
    result = run(
        "qemu-img", "compare", "-f", "raw", "-F", "raw", uri(server, "vol"), other, ok=False
    )
    assert result.returncode == 1
    assert "Content mismatch at offset 4608" in result.stdout


@requires("nbdcopy")
def test_nbdcopy_many_connections_and_requests(server, workdir):
    src = os.path.join(workdir, "random.raw")
    with open(src, "wb") as f:
        f.write(os.urandom(DISK_SIZE))
    u = uri(server, "vol")
    run("nbdcopy", "--connections=4", "--requests=64", "--flush", src, u)
    back = os.path.join(workdir, "back.raw")
    run("nbdcopy", "--connections=4", "--requests=64", u, back)
    with open(src, "rb") as a, open(back, "rb") as b:
        assert a.read() == b.read()


@requires("fio")
def test_fio_pipelined_random_writes_verify(server):
    """fio keeps 32 requests in flight on each of 4 connections and checks every block."""
    result = run(
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        f"--uri={uri(server, 'vol')}",
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=32",
        "--numjobs=4",
        "--size=4M",
        "--offset_increment=4M",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--verify_state_save=0",  # no state files in the working directory
        "--output-format=json",
    )
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert [job["error"] for job in report["jobs"]] == [0, 0, 0, 0]


@requires("qemu-io")
def test_concurrent_qemu_io_clients(server):
    u = uri(server, "vol")
    procs = [
        subprocess.Popen(
            ["qemu-io", "-f", "raw", "-c", f"write -P {i + 1} {i}M 1M", u],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(8)
    ]
    for proc in procs:
        assert proc.wait(60) == 0, proc.stdout.read()
    qemu_io(u, *[f"read -P {i + 1} {i}M 1M" for i in range(8)])
