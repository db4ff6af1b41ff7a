"""The EVS example end to end through real NBD clients against ``evs volume serve`` exports.

v1 gets d1, d2; s1; d3 is written and d2 changed to d4; s2. Then s1 and s2 read back
exactly their data (qemu-io, and exported files), v1 is reverted to s1 after detaching, a
new disk is made from s2, and a VM-style qcow2 image is imported, snapshotted, changed
and reverted, checked with ``qemu-img compare``.
"""

import os

from tests.functional.cli.support import evs
from tests.functional.nbd.nbd_clients import qemu_io, requires, run
from tests.functional.service.support import MiB, ok

CHUNK = 64 * 1024
PATTERNS = {"d1": 0xD1, "d2": 0xD2, "d3": 0xD3, "d4": 0xD4}


def _expect(uri: str, blocks: list[int | None]) -> None:
    """Each 64 KiB block reads as its pattern byte (None: zeros)."""
    commands = [f"read -P {p or 0} {i * CHUNK} {CHUNK}" for i, p in enumerate(blocks)]
    qemu_io(uri, *commands, read_only=True)


def _file_blocks(path: str, count: int) -> list[int | None]:
    with open(path, "rb") as f:
        data = f.read(count * CHUNK)
    out = []
    for i in range(count):
        block = data[i * CHUNK : (i + 1) * CHUNK]
        assert len(set(block)) == 1, f"block {i} is mixed"
        out.append(block[0] or None)
    return out


@requires("qemu-io", "qemu-img")
def test_evs_example_through_nbd(service, state):
    ok(state, "volume", "create", "--size", "1", "--name", "v1")
    v1 = ok(state, "volume", "serve", "v1")
    assert ok(state, "volume", "show", "v1")["status"] == "in-use"
    qemu_io(v1["uri"], f"write -P {PATTERNS['d1']} 0 64k", f"write -P {PATTERNS['d2']} 64k 64k")
    ok(state, "snapshot", "create", "v1", "--name", "s1")  # in-use: the write barrier applies
    qemu_io(v1["uri"], f"write -P {PATTERNS['d3']} 128k 64k", f"write -P {PATTERNS['d4']} 64k 64k")
    ok(state, "snapshot", "create", "v1", "--name", "s2")

    s1 = ok(state, "snapshot", "serve", "s1")
    s2 = ok(state, "snapshot", "serve", "s2", "--port", "0")  # TCP on localhost
    assert s2["uri"].startswith("nbd://127.0.0.1:")
    _expect(s1["uri"], [0xD1, 0xD2, None])
    _expect(s2["uri"], [0xD1, 0xD4, 0xD3])
    _expect(v1["uri"], [0xD1, 0xD4, 0xD3])
    write = run("qemu-io", "-f", "raw", "-c", "write 0 4k", s1["uri"], ok=False)
    assert write.returncode == 1 and "Permission denied" in write.stderr  # read-only export
    ok(state, "snapshot", "unserve", "s1")
    ok(state, "snapshot", "unserve", "s2")

    for name, blocks in (("s1", [0xD1, 0xD2, None]), ("s2", [0xD1, 0xD4, 0xD3])):
        path = os.path.join(state, f"{name}.raw")
        ok(state, "snapshot", "export", name, path)
        assert _file_blocks(path, 3) == blocks and os.path.getsize(path) == 1024 * MiB
        os.unlink(path)

    revert = evs(state, "volume", "revert", "v1", "--snapshot", "s1")
    assert revert.returncode == 1 and "in-use" in revert.stderr  # rule 3.2: detach first
    ok(state, "volume", "unserve", "v1")
    ok(state, "volume", "revert", "v1", "--snapshot", "s1")
    v1 = ok(state, "volume", "serve", "v1", "--read-only")
    _expect(v1["uri"], [0xD1, 0xD2, None])
    ok(state, "volume", "unserve", "v1")

    ok(state, "volume", "create", "--snapshot", "s2", "--name", "v2")
    v2 = ok(state, "volume", "serve", "v2")
    _expect(v2["uri"], [0xD1, 0xD4, 0xD3])
    qemu_io(v2["uri"], "write -P 0xee 0 64k")
    ok(state, "volume", "unserve", "v2")
    s2 = ok(state, "snapshot", "serve", "s2")
    _expect(s2["uri"], [0xD1, 0xD4, 0xD3])  # the new disk's writes are its own
    ok(state, "snapshot", "unserve", "s2")
    assert ok(state, "export", "list") == []
    assert ok(state, "pool", "check")["clean"]


@requires("qemu-io", "qemu-img")
def test_vm_image_import_snapshot_change_revert(service, state):
    image = os.path.join(state, "vm.qcow2")
    run("qemu-img", "create", "-f", "qcow2", image, "64M")
    # A file-system-like layout: a boot sector, metadata near the start, data further in.
    qemu_io_file(image, "write -P 0xeb 0 512", "write -P 0x53 1M 64k", "write -P 0x7a 40M 3M")
    ok(state, "volume", "create", "--size", "1", "--name", "vm")
    imported = ok(state, "volume", "import", "vm", image)
    assert (imported["format"], imported["virtual_size"]) == ("qcow2", 64 * MiB)
    ok(state, "snapshot", "create", "vm", "--name", "golden")
    served = ok(state, "volume", "serve", "vm")
    qemu_io(served["uri"], "write -P 0x99 40M 1M", "write -z 0 512")  # the "VM" changes it
    ok(state, "volume", "unserve", "vm")
    changed = os.path.join(state, "changed.qcow2")
    ok(state, "volume", "export", "vm", changed, "-O", "qcow2")
    assert run("qemu-img", "compare", image, changed, ok=False).returncode == 1
    ok(state, "volume", "revert", "vm", "--snapshot", "golden")
    reverted = os.path.join(state, "reverted.qcow2")
    ok(state, "volume", "export", "vm", reverted, "-O", "qcow2")
    run("qemu-img", "compare", image, reverted)  # identical (the 1 GiB tail reads as zeros)
    golden = os.path.join(state, "golden.vmdk")
    ok(state, "snapshot", "export", "golden", golden, "-O", "vmdk")
    run("qemu-img", "compare", image, golden)
    assert ok(state, "volume", "show", "vm")["status"] == "available"


def qemu_io_file(path: str, *commands: str) -> None:
    cmd = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        cmd += ["-c", command]
    run(*cmd, path)
