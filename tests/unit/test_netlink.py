"""The generic-netlink attribute encoding the kernel NBD client is driven with."""

import struct

from evs_driver.attach import netlink


def test_attributes_are_padded_to_four_bytes_and_parse_back():
    data = netlink.u8(1, 7) + netlink.u32(2, 42) + netlink.u64(3, 2**40) + netlink.string(4, "nbd")
    assert len(data) % 4 == 0
    parsed = netlink.parse(data)
    assert parsed[1] == [b"\x07"]
    assert struct.unpack("=I", parsed[2][0]) == (42,)
    assert struct.unpack("=Q", parsed[3][0]) == (2**40,)
    assert parsed[4] == [b"nbd\0"]


def test_nested_attributes_keep_their_children_and_lose_the_nested_flag():
    data = netlink.nested(
        7, netlink.nested(1, netlink.u32(1, 5)), netlink.nested(1, netlink.u32(1, 6))
    )
    (outer,) = netlink.parse(data)[7]
    items = netlink.parse(outer)[1]
    assert [struct.unpack("=I", netlink.parse(item)[1][0])[0] for item in items] == [5, 6]


def test_a_truncated_attribute_stops_the_parse_instead_of_looping():
    assert netlink.parse(b"\x02\x00\x01\x00") == {}
