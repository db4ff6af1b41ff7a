"""NBDExporter: one NBD server per endpoint, exports by device id, real sockets and devices."""

import os
import shutil
import socket
import stat
import tempfile

import pytest
from oslo_config import cfg

from evs_driver import exception
from evs_driver.filedev import FileDevice
from evs_driver.nbd import Limits
from evs_driver.service.exporter import DEFAULT_PORT, Endpoint, NBDExporter
from tests.functional.nbd.nbd_clients import requires
from tests.functional.nbd.nbd_wire import OPT_LIST_META_CONTEXT, WireClient, make_disk
from tests.functional.nbd.tls_certs import make_pki


class FileBackend:
    """A stand-in backend serving one raw file for every device id (the exporter's input)."""

    supports_diffs = False

    def __init__(self, path):
        self.path = path
        self.opened = []

    def open_device(self, device_id, writable):
        self.opened.append((device_id, writable))
        return FileDevice(self.path, read_only=not writable)


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="evsexp-", dir="/tmp")  # unix socket paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def exporter(workdir):
    e = NBDExporter(os.path.join(workdir, "nbd.sock"))
    yield e
    e.close()


@pytest.fixture
def backend(workdir):
    return FileBackend(make_disk(workdir))


@pytest.mark.parametrize(
    "listen, expected",
    [
        (None, Endpoint(socket="/d.sock")),
        ({}, Endpoint(socket="/d.sock")),
        ({"socket": "/x.sock"}, Endpoint(socket="/x.sock")),
        ({"port": 0}, Endpoint(host="127.0.0.1", port=0)),
        ({"host": "0.0.0.0"}, Endpoint(host="0.0.0.0", port=DEFAULT_PORT)),
        ({"host": "::1", "port": 7}, Endpoint(host="::1", port=7)),
    ],
)
def test_endpoint_parse(listen, expected):
    assert Endpoint.parse(listen, "/d.sock") == expected


@pytest.mark.parametrize(
    "listen, message",
    [
        ({"socket": "relative.sock"}, "absolute"),
        ({"socket": 5}, "absolute"),
        ({"socket": "/a", "port": 1}, "not both"),
        ({"port": 70000}, "bad NBD TCP"),
        ({"port": "80"}, "bad NBD TCP"),
        ({"host": 1}, "bad NBD TCP"),
        ({"path": "/a"}, "bad NBD listen"),
        (["/a"], "bad NBD listen"),
    ],
)
def test_endpoint_parse_refuses_bad_addresses(listen, message):
    with pytest.raises(exception.InvalidInput, match=message):
        Endpoint.parse(listen, "/d.sock")


def test_export_on_default_socket_owner_only_and_reachable(exporter, backend, workdir):
    info = exporter.export(backend, "vol-1", read_only=False)
    path = os.path.join(workdir, "nbd.sock")
    assert info == {
        "export_name": "vol-1",
        "name": None,
        "uri": f"nbd+unix:///vol-1?socket={path}",
        "read_only": False,
        "socket": path,
    }
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client = WireClient(path)
    size, _flags = client.go("vol-1")
    assert size == 16 * 1024 * 1024 and backend.opened == [("vol-1", True)]
    client.close()
    assert exporter.served("vol-1")["uri"] == info["uri"]
    assert [e["export_name"] for e in exporter.exports()] == ["vol-1"]


@pytest.mark.parametrize("diffs", [False, True])
def test_changed_since_is_offered_where_the_backend_can_diff(exporter, backend, workdir, diffs):
    backend.supports_diffs = diffs
    asked = []
    exporter.offer_changes(lambda device_id: asked.append(device_id) or [("s-1", "monday")])
    exporter.export(backend, "vol-1", read_only=False)
    client = WireClient(os.path.join(workdir, "nbd.sock"))
    client.greeting()
    client.structured()
    replies = client.meta_context(OPT_LIST_META_CONTEXT, "vol-1", "evs:")
    client.close()
    offered = [data[4:] for _type, data in replies[:-1]]
    assert offered == ([b"evs:changed-since:monday"] if diffs else [])
    assert asked == (["vol-1"] if diffs else [])


def test_same_export_again_returns_same_info_other_endpoint_refused(exporter, backend, workdir):
    first = exporter.export(backend, "s", read_only=True)
    assert exporter.export(backend, "s", read_only=True) == first
    with pytest.raises(exception.AlreadyExists, match="s"):
        exporter.export(backend, "s", read_only=True, listen={"socket": f"{workdir}/other.sock"})
    with pytest.raises(exception.AlreadyExists):
        exporter.export(backend, "s", read_only=False)


def test_endpoints_are_separate_servers_stopped_with_their_last_export(exporter, backend, workdir):
    tcp = exporter.export(backend, "a", read_only=False, listen={"port": 0})
    exporter.export(backend, "b", read_only=False)
    assert tcp["host"] == "127.0.0.1" and tcp["port"] > 0
    assert tcp["uri"] == f"nbd://127.0.0.1:{tcp['port']}/a"
    client = WireClient.__new__(WireClient)
    client.sock = socket.create_connection(("127.0.0.1", tcp["port"]), timeout=10)
    client.greeting()
    replies = client.info_request(7, "b")  # b lives on the unix socket only
    assert replies[-1][0] == 2**31 + 6  # NBD_REP_ERR_UNKNOWN
    client.close()
    exporter.unexport("a")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tcp["port"]), timeout=10)
    exporter.unexport("b")
    assert not os.path.exists(os.path.join(workdir, "nbd.sock"))
    exporter.unexport("never-served")  # not an error (the Exporter contract)


def test_unexport_disconnects_clients(exporter, backend, workdir):
    exporter.export(backend, "v", read_only=False)
    client = WireClient(os.path.join(workdir, "nbd.sock"))
    client.go("v")
    exporter.unexport("v")
    assert client.is_closed()
    assert exporter.served("v") is None


def test_unusable_socket_path_is_a_clear_error_and_serves_nothing(exporter, backend, workdir):
    listen = {"socket": "/nonexistent-dir/x.sock"}
    with pytest.raises(exception.InvalidInput, match="cannot serve NBD on unix socket"):
        exporter.export(backend, "v", read_only=False, listen=listen)
    assert exporter.exports() == []
    too_long = {"socket": "/tmp/" + "x" * 200}
    with pytest.raises(exception.InvalidInput, match="cannot serve NBD"):
        exporter.export(backend, "v", read_only=False, listen=too_long)


def test_without_default_socket_attach_needs_the_service(backend):
    exporter = NBDExporter(default_socket=None)
    with pytest.raises(exception.AttachNeedsService):
        exporter.export(backend, "v", read_only=False)


def test_closed_exporter_refuses_new_exports(exporter, backend):
    exporter.export(backend, "v", read_only=False)
    exporter.close()
    assert exporter.exports() == []
    with pytest.raises(exception.InvalidOperation, match="shut down"):
        exporter.export(backend, "w", read_only=False)


def test_a_live_socket_is_not_taken_over_a_dead_one_is(exporter, backend, workdir):
    live = os.path.join(workdir, "live.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(live)
    listener.listen(1)
    try:
        with pytest.raises(exception.InvalidInput, match="another server listens"):
            exporter.export(backend, "v", read_only=False, listen={"socket": live})
    finally:
        listener.close()
    info = exporter.export(backend, "v", read_only=False, listen={"socket": live})  # now dead
    assert info["socket"] == live


def nbd_conf(workdir, text: str) -> cfg.ConfigOpts:
    """A private ConfigOpts read from a config file holding ``text``."""
    path = os.path.join(workdir, "evs.conf")
    with open(path, "w") as f:
        f.write(text)
    conf = cfg.ConfigOpts()
    conf(["--config-file", path], project="evs_driver", default_config_files=[])
    return conf


def test_from_conf_reads_the_nbd_group(workdir):
    conf = nbd_conf(workdir, "[nbd]\nmax_connections = 5\nio_timeout = 0\n")
    exporter = NBDExporter.from_conf(conf, os.path.join(workdir, "nbd.sock"))
    assert exporter.limits == Limits(max_connections=5, io_timeout=None)
    exporter.close()


def test_from_conf_names_a_bad_option_and_its_file(workdir):
    conf = nbd_conf(workdir, "[nbd]\nmax_connections_per_export = none\n")
    with pytest.raises(exception.ConfigError, match=r"\[nbd\] max_connections_per_export .*evs"):
        NBDExporter.from_conf(conf, None)


def test_connection_cap_spans_every_endpoint(backend, workdir):
    exporter = NBDExporter(os.path.join(workdir, "nbd.sock"), Limits(max_connections=1))
    exporter.export(backend, "a", read_only=False)
    other = exporter.export(backend, "b", read_only=False, listen={"socket": f"{workdir}/b.sock"})
    held = WireClient(os.path.join(workdir, "nbd.sock"))
    held.go("a")
    refused = WireClient(other["socket"])
    refused.greeting()
    [(reply_type, message)] = refused.info_request(7, "b")
    assert reply_type == 2**31 + 2 and b"maximum of 1 connections" in message  # POLICY
    refused.close()
    held.close()
    exporter.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_plain_tcp_off_loopback_is_refused_naming_the_options(exporter, backend, host):
    with pytest.raises(exception.InvalidInput, match=r"tls_x509_dir.*allow_insecure_tcp = true"):
        exporter.export(backend, "v", read_only=False, listen={"host": host, "port": 0})
    assert exporter.exports() == [] and exporter.served("v") is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_plain_tcp_on_loopback_is_allowed(exporter, backend, host):
    info = exporter.export(backend, "v", read_only=False, listen={"host": host, "port": 0})
    assert info["uri"].startswith("nbd://") and info["tls"] is False


def test_allow_insecure_tcp_serves_off_loopback(backend, workdir):
    exporter = NBDExporter(None, allow_insecure_tcp=True)
    info = exporter.export(backend, "v", read_only=False, listen={"host": "0.0.0.0", "port": 0})
    client = WireClient(("127.0.0.1", info["port"]))
    client.go("v")
    client.close()
    exporter.close()


@requires("openssl")
def test_tls_serves_any_address_with_nbds_uris(backend, workdir):
    pki = make_pki(workdir)
    conf = nbd_conf(workdir, f"[nbd]\ntls_x509_dir = {pki.server}\n")
    exporter = NBDExporter.from_conf(conf, None)
    info = exporter.export(backend, "v", read_only=False, listen={"host": "0.0.0.0", "port": 0})
    assert info["uri"] == f"nbds://0.0.0.0:{info['port']}/v" and info["tls"] is True
    client = WireClient(("127.0.0.1", info["port"]))
    client.greeting()
    assert client.info_request(7, "v")[-1][0] == 2**31 + 5  # NBD_REP_ERR_TLS_REQD
    client.close()
    exporter.close()


def test_bad_tls_dir_fails_at_start_naming_the_option(workdir):
    conf = nbd_conf(workdir, f"[nbd]\ntls_x509_dir = {workdir}/nowhere\n")
    with pytest.raises(exception.ConfigError, match=r"\[nbd\] tls_x509_dir .*server-cert.pem is"):
        NBDExporter.from_conf(conf, None)


def test_export_under_a_name_too(exporter, backend, workdir):
    info = exporter.export(backend, "vol-1", read_only=False, name="db")
    assert info["name"] == "db" and info["export_name"] == "vol-1"
    for name in ("vol-1", "db"):
        client = WireClient(os.path.join(workdir, "nbd.sock"))
        client.go(name)
        client.close()
    assert exporter.exports()[0]["name"] == "db"
    with pytest.raises(exception.AlreadyExists, match="db"):
        exporter.export(backend, "vol-2", read_only=False, name="db")
    assert [e["export_name"] for e in exporter.exports()] == ["vol-1"]
    with pytest.raises(exception.AlreadyExists, match="vol-1"):
        exporter.export(backend, "vol-3", read_only=False, name="vol-1")
