"""The control protocol: malformed requests are refused with a clear error, replies round-trip."""

import pytest

from evs_driver import exception
from evs_driver.service import protocol


class TestParseRequest:
    @pytest.mark.parametrize(
        "line, message",
        [
            (b"not json\n", "not JSON"),
            (b"\xff\xfe\n", "not JSON"),
            (b"[1, 2]\n", "JSON object"),
            (b'{"method": "rm -rf"}\n', "unknown method"),
            (b"{}\n", "unknown method"),
            (b'{"method": "volume_list", "args": {}}\n', "args must be a list"),
            (b'{"method": "volume_list", "kwargs": []}\n', "args must be a list"),
            (b'{"method": "__init__"}\n', "unknown method"),
            (b"x" * (protocol.MAX_LINE + 1), "longer than"),
        ],
    )
    def test_malformed_request_is_invalid_input(self, line, message):
        with pytest.raises(exception.InvalidInput, match=message):
            protocol.parse_request(line)

    def test_request_round_trips(self):
        line = protocol.request("volume_show", ("v1",), {"x": 1})
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert protocol.parse_request(line) == ("volume_show", ["v1"], {"x": 1})


def test_error_reply_raises_the_same_class_and_message():
    line = protocol.error(exception.InvalidStatus("Volume v is in-use; no."))
    with pytest.raises(exception.InvalidStatus, match="in-use; no"):
        protocol.parse_reply(line)


def test_unknown_error_type_becomes_evs_error():
    line = b'{"ok": false, "error": {"type": "KeyError", "message": "boom", "code": 5}}\n'
    with pytest.raises(exception.EVSError, match="boom") as info:
        protocol.parse_reply(line)
    assert type(info.value) is exception.EVSError


@pytest.mark.parametrize("line", [b"garbage\n", b"{}\n", b'{"ok": false}\n'])
def test_malformed_reply_is_an_error(line):
    with pytest.raises(exception.EVSError, match="malformed reply"):
        protocol.parse_reply(line)


def test_ok_reply_round_trips():
    assert protocol.parse_reply(protocol.ok({"a": [1, None]})) == {"a": [1, None]}
