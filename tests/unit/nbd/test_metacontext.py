"""Metadata contexts: query parsing, selection, and answers made safe to send."""

import struct

import pytest

from evs_driver.nbd import metacontext
from evs_driver.nbd.metacontext import ALLOCATION, BASE, MAX_EXTENTS, MetaContext


def request(name: bytes, *queries: bytes) -> bytes:
    data = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    return data + b"".join(struct.pack(">I", len(q)) + q for q in queries)


def test_parse_request():
    assert metacontext.parse_request(request(b"vol", b"base:allocation", b"x:")) == (
        b"vol",
        ["base:allocation", "x:"],
    )
    assert metacontext.parse_request(request(b"")) == (b"", [])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        request(b"vol")[:-1],
        request(b"vol", b"base:allocation")[:-1],
        request(b"vol", b"base:allocation") + b"!",
        request(b"vol", b"\xff"),
        request(b"x" * 4097),
        request(b"vol", b"q" * 4097),
        b"\0\0\0\0" + b"\xff\xff\xff\xff",  # a count with nothing behind it
    ],
)
def test_malformed_requests(data):
    assert metacontext.parse_request(data) is None


@pytest.mark.parametrize(
    "queries, listing, expected",
    [
        ([], True, [ALLOCATION]),
        ([], False, []),
        (["base:"], True, [ALLOCATION]),
        (["base:"], False, []),
        (["base:allocation", "base:allocation"], False, [ALLOCATION]),
        (["other:allocation", "base:else"], False, []),
        (["allocation"], False, None),
        ([":allocation"], True, None),
    ],
)
def test_select(queries, listing, expected):
    assert metacontext.select([BASE], queries, listing) == expected


def context(answer):
    def query(device, offset, length):
        if isinstance(answer, Exception):
            raise answer
        return answer

    return MetaContext("x:y", query)


@pytest.mark.parametrize(
    "runs, one, expected",
    [
        ([(100, 3), (50, 0)], False, [(100, 3), (50, 0)]),
        ([(100, 3), (50, 0)], True, [(100, 3)]),
        ([(100, 3), (500, 0)], False, [(100, 3), (100, 0)]),  # cut at the request's end
        ([(500, 3), (1, 0)], False, [(200, 3)]),
        ([(100, 3), (0, 0), (50, 0)], False, [(100, 3)]),  # stops at an empty run
        ([(100, 2**40 + 3)], False, [(100, 3)]),  # flags are 32 bits
        ([], False, [(200, 0)]),
        (None, False, [(200, 0)]),
        ([("x", 1)], False, [(200, 0)]),
        (OSError(5, "injected"), False, [(200, 0)]),
    ],
)
def test_answers_are_safe_to_send(runs, one, expected):
    assert metacontext.answer(context(runs), None, 0, 200, one) == expected


def test_answer_is_capped():
    runs = [(1, i % 2) for i in range(MAX_EXTENTS * 2)]
    assert len(metacontext.answer(context(runs), None, 0, 10**6, False)) == MAX_EXTENTS


def test_a_device_without_extents_is_all_allocated():
    assert metacontext.answer(ALLOCATION, object(), 0, 4096, False) == [(4096, 0)]
