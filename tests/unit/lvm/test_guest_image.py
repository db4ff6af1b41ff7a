"""Pieces of the LVM guest builder that run on the host: kernel extraction and cpio."""

import io
import lzma
import stat

import pytest

from tests.lvm_guest import cpio, vmlinux


def test_elf_kernel_is_found_after_a_setup_stub():
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bzimage = b"MZ setup stub \xfd7zXZ\x00 false magic " + lzma.compress(elf, lzma.FORMAT_XZ)
    assert vmlinux.extract_vmlinux(bzimage) == elf
    assert vmlinux.extract_vmlinux(elf) == elf


def test_image_without_a_kernel_is_an_error():
    with pytest.raises(ValueError, match="no ELF kernel"):
        vmlinux.extract_vmlinux(b"MZ" + lzma.compress(b"not a kernel", lzma.FORMAT_XZ))


def read_cpio(blob: bytes) -> list[tuple[str, int, bytes, int, int]]:
    """(name, mode, data, rdevmajor, rdevminor) of each newc entry, trailer excluded."""
    entries, pos = [], 0
    while True:
        assert blob[pos : pos + 6] == b"070701"
        fields = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = blob[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        data = blob[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            assert pos == len(blob)
            return entries
        entries.append((name, fields[1], data, fields[9], fields[10]))


def test_cpio_round_trip(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "bin" / "tool").chmod(0o755)
    (tmp_path / "lib").symlink_to("usr/lib")
    out = io.BytesIO()
    writer = cpio.CpioWriter(out)
    writer.add_tree(str(tmp_path))
    writer.add_chardev("dev/console", 5, 1)
    writer.add_file("init", b"odd-length", 0o700)
    writer.close()
    entries = {name: (mode, data, rdev) for name, mode, data, *rdev in read_cpio(out.getvalue())}
    assert stat.S_ISDIR(entries["bin"][0])
    assert entries["bin/tool"][:2] == (stat.S_IFREG | 0o755, b"#!/bin/sh\n")
    assert entries["lib"][:2] == (stat.S_IFLNK | 0o777, b"usr/lib")
    assert entries["dev/console"][0] == stat.S_IFCHR | 0o600
    assert entries["dev/console"][2] == [5, 1]
    assert entries["init"][1] == b"odd-length"
