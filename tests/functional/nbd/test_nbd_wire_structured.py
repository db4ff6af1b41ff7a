"""Structured replies, metadata contexts and BLOCK_STATUS over a raw socket.

The disk is sparse: data at 1 MiB (64 KiB) and at 8 MiB (1 MiB), holes elsewhere. Each
malformed option or request must get the protocol's error and leave the server serving.
"""

import os
import struct

import pytest

from evs_driver.filedev import FileDevice
from evs_driver.nbd import Limits, NBDServer, metacontext
from evs_driver.nbd.metacontext import MetaContext
from tests.functional.nbd.nbd_wire import (
    CMD_BLOCK_STATUS,
    CMD_READ,
    EINVAL,
    EIO,
    FLAG_FUA,
    FLAG_REQ_ONE,
    OPT_GO,
    OPT_LIST_META_CONTEXT,
    OPT_SET_META_CONTEXT,
    OPT_STRUCTURED_REPLY,
    REP_ACK,
    REP_ERR_INVALID,
    REP_ERR_UNKNOWN,
    REP_META_CONTEXT,
    REPLY_FLAG_DONE,
    STATE_HOLE,
    STATE_ZERO,
    TYPE_BLOCK_STATUS,
    TYPE_ERROR,
    TYPE_ERROR_OFFSET,
    TYPE_NONE,
    TYPE_OFFSET_DATA,
    WireClient,
)

KiB, MiB = 1024, 1024 * 1024
HOLE = STATE_HOLE | STATE_ZERO
ALLOCATION = (REP_META_CONTEXT, struct.pack(">I", 0) + b"base:allocation")


@pytest.fixture
def sparse(disk):
    with open(disk, "r+b") as f:
        f.seek(MiB)
        f.write(b"\x11" * (64 * KiB))
        f.seek(8 * MiB)
        f.write(b"\x22" * MiB)
    return disk


def negotiated(sock, *queries, name="vol") -> tuple[WireClient, int | None]:
    """A client with structured replies and ``queries`` selected on ``name``, in
    transmission; returns it and the id of the first context selected."""
    client = WireClient(sock)
    client.greeting()
    client.structured()
    context_id = None
    if queries:
        replies = client.meta_context(OPT_SET_META_CONTEXT, name, *queries)
        assert replies[-1] == (REP_ACK, b"")
        if len(replies) > 1:
            context_id = struct.unpack(">I", replies[0][1][:4])[0]
    assert client.info_request(OPT_GO, name)[-1][0] == REP_ACK
    return client, context_id


def block_status(client, offset, length, flags=0, cookie=5):
    """Send BLOCK_STATUS; return [(context id, [(length, flags), ...])] until DONE."""
    client.request(CMD_BLOCK_STATUS, offset, length, flags, cookie)
    answers = []
    while True:
        chunk_flags, kind, got_cookie, payload = client.chunk()
        assert (kind, got_cookie) == (TYPE_BLOCK_STATUS, cookie)
        (context_id,) = struct.unpack(">I", payload[:4])
        runs = [struct.unpack(">II", payload[i : i + 8]) for i in range(4, len(payload), 8)]
        answers.append((context_id, runs))
        if chunk_flags & REPLY_FLAG_DONE:
            return answers


# -- negotiation -------------------------------------------------------------------------
def test_structured_reply_with_data_is_invalid_then_works(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.option(OPT_STRUCTURED_REPLY, b"x")
    assert client.option_reply()[:2] == (OPT_STRUCTURED_REPLY, REP_ERR_INVALID)
    client.structured()
    client.structured()  # asking again is harmless
    client.close()


@pytest.mark.parametrize("option", [OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT])
def test_meta_context_before_structured_replies_is_invalid(server, sock, option):
    client = WireClient(sock)
    client.greeting()
    assert client.meta_context(option, "vol", "base:allocation")[0][0] == REP_ERR_INVALID
    client.close()


@pytest.mark.parametrize(
    "queries, expected",
    [
        ((), [ALLOCATION]),  # no query: every context
        (("base:",), [ALLOCATION]),  # the namespace's wildcard
        (("base:allocation",), [ALLOCATION]),
        (("base:allocation", "base:allocation"), [ALLOCATION]),  # no repeats
        (("qemu:dirty-bitmap:x", "nope:"), []),  # unknown namespaces are ignored
        (("base:nothing",), []),
    ],
)
def test_list_meta_context(server, sock, queries, expected):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    assert client.meta_context(OPT_LIST_META_CONTEXT, "vol-id", *queries) == [
        *expected,
        (REP_ACK, b""),
    ]
    client.close()


def test_set_meta_context_gives_ids_and_ignores_the_wildcard(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    assert client.meta_context(OPT_SET_META_CONTEXT, "vol", "base:") == [(REP_ACK, b"")]
    replies = client.meta_context(OPT_SET_META_CONTEXT, "vol", "base:allocation")
    assert len(replies) == 2 and replies[-1] == (REP_ACK, b"")
    reply_type, data = replies[0]
    assert reply_type == REP_META_CONTEXT and data[4:] == b"base:allocation"
    assert struct.unpack(">I", data[:4])[0] != 0
    client.close()


def _query(text: bytes) -> bytes:
    return struct.pack(">I", len(text)) + text


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0\0\0\3vo",  # name cut short
        b"\0\0\0\3vol",  # no query count
        b"\0\0\0\3vol\0\0\0\1",  # one query promised, none sent
        b"\0\0\0\3vol\0\0\0\1\0\0\0\x20base:",  # query shorter than its length
        b"\0\0\0\3vol\0\0\0\0extra",  # bytes after the last query
        b"\0\0\0\3vol\xff\xff\xff\xff" + _query(b"base:allocation"),  # a huge count
        b"\0\0\0\3vol\0\0\0\1" + _query(b"base\xff:allocation"),  # not UTF-8
        b"\0\0\0\3vol\0\0\0\1" + _query(b"allocation"),  # no namespace
        b"\0\0\0\3vol\0\0\0\1" + _query(b":allocation"),  # an empty namespace
        b"\xff\xff\xff\xffvol\0\0\0\0",  # a name longer than the data
    ],
)
@pytest.mark.parametrize("option", [OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT])
def test_malformed_meta_context_requests_are_invalid(server, sock, option, data):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    client.option(option, data)
    assert client.option_reply()[:2] == (option, REP_ERR_INVALID)
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK  # negotiation goes on
    client.close()


def test_meta_context_of_an_unknown_export(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    assert client.meta_context(OPT_SET_META_CONTEXT, "nope", "base:allocation")[0][0] == (
        REP_ERR_UNKNOWN
    )
    client.close()


# -- BLOCK_STATUS ------------------------------------------------------------------------
def test_block_status_reports_holes_and_data(server, sock, sparse):
    client, context_id = negotiated(sock, "base:allocation")
    [(got_id, runs)] = block_status(client, 0, 16 * MiB)
    assert got_id == context_id
    assert runs == [
        (MiB, HOLE),
        (64 * KiB, 0),
        (7 * MiB - 64 * KiB, HOLE),
        (MiB, 0),
        (7 * MiB, HOLE),
    ]
    assert block_status(client, MiB + 4 * KiB, 8 * MiB, FLAG_REQ_ONE) == [
        (context_id, [(60 * KiB, 0)])
    ]
    assert block_status(client, 3 * MiB, 2 * MiB, FLAG_FUA) == [(context_id, [(2 * MiB, HOLE)])]
    client.close()


@pytest.mark.parametrize(
    "offset, length, flags",
    [
        (0, 0, 0),  # empty
        (16 * MiB - 512, 1024, 0),  # past the end
        (2**64 - 512, 1024, 0),  # wraps around
        (0, 512, 4),  # NBD_CMD_FLAG_DF is not for BLOCK_STATUS
        (0, 512, 1 << 15),  # unknown flag
    ],
)
def test_bad_block_status_requests_are_einval(server, sock, offset, length, flags):
    client, _ = negotiated(sock, "base:allocation")
    client.request(CMD_BLOCK_STATUS, offset, length, flags, cookie=9)
    assert client.reply() == (EINVAL, 9)
    assert block_status(client, 0, 512)[0][1] == [(512, HOLE)]  # still in step
    client.close()


def test_block_status_without_a_selected_context_is_einval(server, sock):
    for queries in ((), ("base:",)):
        client, _ = negotiated(sock, *queries)
        client.request(CMD_BLOCK_STATUS, 0, 512, cookie=3)
        assert client.reply() == (EINVAL, 3)
        client.close()
    plain = WireClient(sock)
    plain.go("vol")  # no structured replies at all
    plain.request(CMD_BLOCK_STATUS, 0, 512, cookie=4)
    assert plain.reply() == (EINVAL, 4)
    plain.close()


def test_contexts_hold_only_for_the_export_they_were_set_on(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    assert client.meta_context(OPT_SET_META_CONTEXT, "ro", "base:allocation")[-1][0] == REP_ACK
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    client.request(CMD_BLOCK_STATUS, 0, 512, cookie=3)
    assert client.reply() == (EINVAL, 3)
    client.close()


def test_an_alias_is_the_same_export(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    client.meta_context(OPT_SET_META_CONTEXT, "vol-id", "base:allocation")
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    assert block_status(client, 0, 512)[0][1] == [(512, HOLE)]
    client.close()


def test_a_failed_set_clears_the_selection(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.structured()
    client.meta_context(OPT_SET_META_CONTEXT, "vol", "base:allocation")
    client.option(OPT_SET_META_CONTEXT, b"junk")
    assert client.option_reply()[1] == REP_ERR_INVALID
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    client.request(CMD_BLOCK_STATUS, 0, 512, cookie=3)
    assert client.reply() == (EINVAL, 3)
    client.close()


def test_a_failing_or_lying_device_reports_allocated(server, sock, disk):
    """Fault injection (a real file system does not fail on cue)."""

    class Lying(FileDevice):
        answers = iter([OSError(5, "injected"), [], [(0, 3)], [(-5, 3)], None, [(10**12, 3)]])

        def extents(self, offset, length):
            answer = next(self.answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

    server.add_export("lying", lambda: Lying(disk))
    client, _ = negotiated(sock, "base:allocation", name="lying")
    for _ in range(5):
        assert block_status(client, 0, 4096)[0][1] == [(4096, 0)]
    assert block_status(client, 0, 4096)[0][1] == [(4096, 3)]  # clamped to the request
    client.close()


def test_a_second_namespace_gets_its_own_chunk(sparse, workdir):
    """How a later context (changed since a snapshot, say) plugs in: one more namespace."""

    class Halves:
        name = "x-test"
        context = MetaContext("x-test:halves", lambda device, offset, length: [(length // 2, 7)])

        def contexts(self, leaf, listing):
            return [self.context] if leaf == "halves" or (listing and not leaf) else []

    with NBDServer(namespaces=(metacontext.BASE, Halves())) as nbd:
        nbd.add_export("vol", lambda: FileDevice(sparse))
        path = nbd.listen_unix(f"{workdir}/two.sock")
        lister = WireClient(path)
        lister.greeting()
        lister.structured()
        names = [data[4:] for _, data in lister.meta_context(OPT_LIST_META_CONTEXT, "vol")[:-1]]
        assert names == [b"base:allocation", b"x-test:halves"]
        lister.close()
        client = WireClient(path)
        client.greeting()
        client.structured()
        replies = client.meta_context(
            OPT_SET_META_CONTEXT, "vol", "x-test:halves", "base:allocation"
        )
        ids = {data[4:]: struct.unpack(">I", data[:4])[0] for _, data in replies[:-1]}
        assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
        answers = dict(block_status(client, 0, 2 * MiB))
        assert answers == {
            ids[b"x-test:halves"]: [(MiB, 7)],
            ids[b"base:allocation"]: [(MiB, HOLE), (64 * KiB, 0), (MiB - 64 * KiB, HOLE)],
        }
        client.close()


# -- structured reads --------------------------------------------------------------------
def test_read_is_one_data_chunk_and_errors_are_error_chunks(server, sock, sparse):
    client, _ = negotiated(sock)
    client.request(CMD_READ, MiB, 4096, cookie=1)
    flags, kind, cookie, payload = client.chunk()
    assert (flags, kind, cookie) == (REPLY_FLAG_DONE, TYPE_OFFSET_DATA, 1)
    assert payload == struct.pack(">Q", MiB) + b"\x11" * 4096
    for offset, length, request_flags in ((16 * MiB, 512, 0), (0, 512, 1 << 14)):
        client.request(CMD_READ, offset, length, request_flags, cookie=2)
        flags, kind, cookie, payload = client.chunk()
        assert (flags, kind, cookie) == (REPLY_FLAG_DONE, TYPE_ERROR, 2)
        assert struct.unpack(">IH", payload) == (EINVAL, 0)
    assert client.write(0, b"w" * 512) == 0  # writes keep simple replies
    client.close()


def test_large_structured_read_comes_in_pieces_and_a_late_failure_is_an_error_offset(
    sparse, workdir
):
    """Fault injection (a real disk does not fail on cue): reads past 8 MiB + 128 KiB fail."""

    class FailsLate(FileDevice):
        def readinto(self, offset, buf):
            if offset >= 8 * MiB + 128 * KiB:
                raise OSError(5, "injected")
            super().readinto(offset, buf)

    with NBDServer(limits=Limits(max_bytes_in_flight=64 * KiB)) as nbd:
        nbd.add_export("vol", lambda: FileDevice(sparse))
        nbd.add_export("late", lambda: FailsLate(sparse))
        path = nbd.listen_unix(f"{workdir}/pieces.sock")
        client, _ = negotiated(path)
        client.request(CMD_READ, 8 * MiB, 256 * KiB, cookie=1)
        offsets = []
        while True:
            flags, kind, _cookie, payload = client.chunk()
            assert kind == TYPE_OFFSET_DATA and payload[8:] == b"\x22" * (len(payload) - 8)
            offsets.append(struct.unpack(">Q", payload[:8])[0])
            if flags & REPLY_FLAG_DONE:
                break
        assert offsets == [8 * MiB + i * 64 * KiB for i in range(4)]
        client.close()
        client, _ = negotiated(path, name="late")
        client.request(CMD_READ, 8 * MiB, 256 * KiB, cookie=2)
        for _ in range(2):
            flags, kind, _cookie, payload = client.chunk()
            assert (flags, kind) == (0, TYPE_OFFSET_DATA)
        flags, kind, _cookie, payload = client.chunk()
        assert (flags, kind) == (REPLY_FLAG_DONE, TYPE_ERROR_OFFSET)
        assert struct.unpack(">IHQ", payload) == (EIO, 0, 8 * MiB + 128 * KiB)
        client.request(CMD_READ, 0, 512, cookie=3)  # the connection goes on
        assert client.chunk()[:3] == (REPLY_FLAG_DONE, TYPE_OFFSET_DATA, 3)
        client.close()


def test_empty_structured_read_is_a_none_chunk(server, sock):
    client, _ = negotiated(sock)
    client.request(CMD_READ, 4096, 0, cookie=6)
    assert client.chunk() == (REPLY_FLAG_DONE, TYPE_NONE, 6, b"")
    client.request(CMD_READ, 0, 1, cookie=7)
    assert client.chunk() == (REPLY_FLAG_DONE, TYPE_OFFSET_DATA, 7, bytes(9))
    client.close()


def test_random_data_survives_structured_reads(server, sock):
    client, _ = negotiated(sock)
    data = os.urandom(3 * MiB + 7)  # more than the reply arena: two pieces
    assert client.write(5, data) == 0
    client.request(CMD_READ, 5, len(data), cookie=8)
    received = bytearray(len(data))
    while True:
        flags, kind, cookie, payload = client.chunk()
        assert (kind, cookie) == (TYPE_OFFSET_DATA, 8)
        (offset,) = struct.unpack(">Q", payload[:8])
        received[offset - 5 : offset - 5 + len(payload) - 8] = payload[8:]
        if flags & REPLY_FLAG_DONE:
            break
    assert received == data
    client.close()
