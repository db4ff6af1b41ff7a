"""NBDServer's own duties: listening, URIs, and its lifetime."""

import os
import socket

import pytest

from evs_driver import exception
from evs_driver.nbd import NBDServer


@pytest.fixture
def server():
    s = NBDServer()
    yield s
    s.close()


def test_uri_needs_a_listener(server):
    with pytest.raises(exception.InvalidOperation, match="not listening"):
        server.uri("vol")


def test_unix_uri_quotes_names(server, tmp_path):
    path = server.listen_unix(str(tmp_path / "a.sock"))
    assert server.uri("vol 1/é") == f"nbd+unix:///vol%201%2F%C3%A9?socket={path}"


def test_tcp_uri_and_free_port(server):
    host, port = server.listen_tcp()
    assert host == "127.0.0.1" and port > 0
    assert server.uri("v") == f"nbd://127.0.0.1:{port}/v"
    with socket.create_connection((host, port), timeout=10) as c:
        assert c.recv(8) == b"NBDMAGIC"


def test_tcp_over_ipv6(server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        host, port = server.listen_tcp("::1")
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    assert server.uri("v") == f"nbd://[::1]:{port}/v"


def test_stale_socket_is_replaced(server, tmp_path):
    path = str(tmp_path / "stale.sock")
    old = socket.socket(socket.AF_UNIX)
    old.bind(path)
    old.close()
    server.listen_unix(path)
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(path)
        assert c.recv(8) == b"NBDMAGIC"


def test_a_file_in_the_way_is_not_replaced(server, tmp_path):
    path = tmp_path / "file"
    path.write_text("keep me")
    with pytest.raises(OSError):
        server.listen_unix(str(path))
    assert path.read_text() == "keep me"


def test_tcp_port_in_use(server):
    host, port = server.listen_tcp()
    other = NBDServer()
    with pytest.raises(OSError):
        other.listen_tcp(host, port)
    other.close()


def test_closed_server_refuses_to_listen(tmp_path):
    s = NBDServer()
    s.close()
    with pytest.raises(exception.InvalidOperation, match="closed"):
        s.listen_unix(str(tmp_path / "x.sock"))
    assert not os.path.exists(tmp_path / "x.sock")
