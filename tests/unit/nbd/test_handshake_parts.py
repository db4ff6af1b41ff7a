"""The handshake's pure parts: block size rules, transmission flags, INFO/GO parsing."""

import struct

import pytest

from evs_driver import exception
from evs_driver.nbd.handshake import _parse_info_request
from evs_driver.nbd.session import BlockSizes, transmission_flags


class Device:
    def __init__(self, multi_conn=None):
        if multi_conn is not None:
            self.can_multi_conn = multi_conn


@pytest.mark.parametrize(
    "minimum,preferred,maximum",
    [(1, 4096, 32 << 20), (512, 4096, 32 << 20), (1, 1, 1), (4096, 4096, 12288), (1, 2, 2**32 - 1)],
)
def test_valid_block_sizes(minimum, preferred, maximum):
    assert BlockSizes(minimum, preferred, maximum).maximum == maximum


@pytest.mark.parametrize(
    "minimum,preferred,maximum",
    [
        (0, 4096, 1 << 20),  # minimum must be positive
        (3, 4096, 1 << 20),  # not a power of 2
        (512, 3000, 1 << 20),
        (1 << 17, 1 << 17, 1 << 20),  # minimum over 64 KiB
        (4096, 512, 1 << 20),  # preferred below minimum
        (512, 4096, 2048),  # maximum below preferred
        (512, 4096, 4096 + 100),  # maximum not a multiple of minimum
        (1, 4096, 2**32),  # maximum does not fit 32 bits
    ],
)
def test_invalid_block_sizes(minimum, preferred, maximum):
    with pytest.raises(exception.InvalidInput, match="minimum and preferred must be"):
        BlockSizes(minimum, preferred, maximum)


@pytest.mark.parametrize(
    "device,read_only,flags",
    [
        (Device(), False, 1 | 4 | 8 | 32 | 64),
        (Device(False), False, 1 | 4 | 8 | 32 | 64),
        (Device(True), False, 1 | 4 | 8 | 32 | 64 | 256),
        (Device(), True, 1 | 2 | 4 | 256),
        (Device(False), True, 1 | 2 | 4 | 256),
    ],
)
def test_transmission_flags(device, read_only, flags):
    assert transmission_flags(device, read_only) == flags


def info(name: bytes, *types: int) -> bytes:
    return (
        struct.pack(">I", len(name))
        + name
        + struct.pack(">H", len(types))
        + b"".join(struct.pack(">H", t) for t in types)
    )


def test_parse_info_request():
    assert _parse_info_request(info(b"vol", 3, 1, 3)) == (b"vol", {1, 3})
    assert _parse_info_request(info(b"")) == (b"", set())
    assert _parse_info_request(info(b"x" * 4096)) == (b"x" * 4096, set())


@pytest.mark.parametrize(
    "data",
    [b"", b"\0\0\0\0\0", info(b"x" * 4097), info(b"vol", 1)[:-1], info(b"vol") + b"\0"],
)
def test_parse_info_request_rejects_malformed(data):
    assert _parse_info_request(data) is None
