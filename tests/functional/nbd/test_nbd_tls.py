"""NBD over TLS (FORCEDTLS, X.509): real qemu and libnbd clients, and hostile raw ones.

Certificates are made for each test module with the openssl command (``tls_certs``).
"""

import os
import socket
import ssl
import struct

import pytest

from evs_driver.filedev import FileDevice
from evs_driver.nbd import Limits, NBDServer
from evs_driver.nbd.tls import server_context
from tests.functional.nbd.nbd_clients import requires, run
from tests.functional.nbd.nbd_wire import (
    OPT_ABORT,
    OPT_EXPORT_NAME,
    OPT_GO,
    OPT_INFO,
    OPT_LIST,
    OPT_STARTTLS,
    REP_ACK,
    REP_ERR_INVALID,
    REP_ERR_POLICY,
    REP_ERR_TLS_REQD,
    WireClient,
    wait_for,
)
from tests.functional.nbd.tls_certs import make_pki

pytestmark = requires("openssl")
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_server(pki, disk):
    """``vol`` on TCP loopback with TLS required, client certificates checked."""
    nbd = NBDServer(limits=Limits(handshake_timeout=10))
    nbd.add_export("vol", lambda: FileDevice(disk))
    address = nbd.listen_tcp(tls_context=server_context(pki.server))
    yield nbd, address
    nbd.close()


def client_context(directory) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=os.path.join(directory, "ca-cert.pem"))
    cert = os.path.join(directory, "client-cert.pem")
    if os.path.exists(cert):
        context.load_cert_chain(cert, os.path.join(directory, "client-key.pem"))
    return context


def qemu_opts(address, directory) -> list[str]:
    host, port = address
    return [
        "--object",
        f"tls-creds-x509,id=tls0,endpoint=client,dir={directory}",
        "--image-opts",
        f"driver=nbd,server.type=inet,server.host={host},server.port={port},"
        "export=vol,tls-creds=tls0",
    ]


# -- real clients ------------------------------------------------------------------------
@requires("qemu-io", "qemu-img")
def test_qemu_writes_and_reads_over_tls(tls_server, pki, disk):
    nbd, address = tls_server
    assert nbd.uri("vol") == f"nbds://127.0.0.1:{address[1]}/vol"
    run("qemu-io", *qemu_opts(address, pki.client), "-c", "write -P 0x3c 1M 1M", "-c", "flush")
    result = run("qemu-io", *qemu_opts(address, pki.client), "-c", "read -P 0x3c 1M 1M")
    assert "read 1048576/1048576" in result.stdout
    with open(disk, "rb") as f:
        f.seek(MiB)
        assert f.read(MiB) == b"\x3c" * MiB
    assert "virtual size: 16 MiB" in run("qemu-img", "info", *qemu_opts(address, pki.client)).stdout


@requires("nbdinfo", "nbdcopy")
def test_libnbd_clients_over_tls(tls_server, pki, workdir):
    nbd, _address = tls_server
    uri = f"{nbd.uri('vol')}?tls-certificates={pki.client}"
    assert "with TLS" in run("nbdinfo", uri).stdout
    copy = os.path.join(workdir, "copy.raw")
    run("nbdcopy", uri, copy)
    assert os.path.getsize(copy) == 16 * MiB


@requires("nbdinfo", "qemu-img")
def test_clients_without_tls_are_refused(tls_server):
    _nbd, (host, port) = tls_server
    plain = f"nbd://{host}:{port}/vol"
    result = run("qemu-img", "info", plain, ok=False)
    assert result.returncode != 0 and "TLS negotiation required" in result.stderr
    assert "server reported: TLS is required" in result.stderr
    result = run("nbdinfo", plain, ok=False)
    assert result.returncode != 0


@requires("nbdinfo", "qemu-img")
def test_a_client_trusting_another_ca_fails(tls_server, pki):
    nbd, address = tls_server
    result = run("nbdinfo", f"{nbd.uri('vol')}?tls-certificates={pki.wrong_ca}", ok=False)
    assert result.returncode != 0 and "certificate verification" in result.stderr
    result = run("qemu-img", "info", *qemu_opts(address, pki.wrong_ca), ok=False)
    assert result.returncode != 0 and "known issuer" in result.stderr
    assert "with TLS" in run("nbdinfo", f"{nbd.uri('vol')}?tls-certificates={pki.client}").stdout


@requires("nbdinfo")
def test_a_client_certificate_from_another_ca_is_refused(tls_server, pki):
    nbd, _address = tls_server  # (qemu checks its own certificate first and never connects)
    result = run("nbdinfo", f"{nbd.uri('vol')}?tls-certificates={pki.stranger}", ok=False)
    assert result.returncode != 0 and "TLS" in result.stderr
    wait_for(lambda: nbd.connection_count() == 0, "the refused connection to end")


@requires("nbdinfo")
def test_a_client_certificate_is_required_unless_verify_peer_is_off(pki, disk):
    uri_tail = f"?tls-certificates={pki.no_client_cert}"
    for verify_peer, works in ((True, False), (False, True)):
        with NBDServer() as nbd:
            nbd.add_export("vol", lambda: FileDevice(disk))
            nbd.listen_tcp(tls_context=server_context(pki.server, verify_peer=verify_peer))
            result = run("nbdinfo", nbd.uri("vol") + uri_tail, ok=False)
            assert (result.returncode == 0) is works, result.stderr


# -- raw wire: what comes before TLS ---------------------------------------------------
@pytest.mark.parametrize("option", [OPT_LIST, OPT_INFO, OPT_GO, 8, 9, 10, 99])
def test_options_before_tls_get_tls_required(tls_server, pki, option):
    _nbd, address = tls_server
    client = WireClient(address)
    client.greeting()
    client.option(option, struct.pack(">I", 3) + b"vol" + struct.pack(">H", 0))
    reply_option, reply_type, message = client.option_reply()
    assert (reply_option, reply_type) == (option, REP_ERR_TLS_REQD)
    assert b"NBD_OPT_STARTTLS" in message
    client.starttls(client_context(pki.client))
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK  # then everything works
    assert client.read(0, 4096) == bytes(4096)
    client.close()


def test_export_name_before_tls_is_hung_up_on(tls_server):
    _nbd, address = tls_server
    for client_flags in (1, 0):  # fixed newstyle, and the old newstyle
        client = WireClient(address)
        client.greeting(client_flags)
        client.option(OPT_EXPORT_NAME, b"vol")
        assert client.is_closed()


def test_abort_before_tls_is_acknowledged(tls_server):
    _nbd, address = tls_server
    client = WireClient(address)
    client.greeting()
    client.option(OPT_ABORT)
    assert client.option_reply() == (OPT_ABORT, REP_ACK, b"")
    assert client.is_closed()


def test_starttls_with_data_is_invalid_then_a_proper_one_works(tls_server, pki):
    _nbd, address = tls_server
    client = WireClient(address)
    client.greeting()
    client.option(OPT_STARTTLS, b"junk")
    assert client.option_reply()[:2] == (OPT_STARTTLS, REP_ERR_INVALID)
    client.starttls(client_context(pki.client))
    client.option(OPT_STARTTLS)  # a second one, under TLS
    assert client.option_reply()[:2] == (OPT_STARTTLS, REP_ERR_INVALID)
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    data = os.urandom(5 * MiB + 3)  # larger than the reply arena and the receive buffer
    assert client.write(7, data) == 0
    assert client.read(7, len(data)) == data
    client.close()


def test_bytes_pipelined_after_starttls_are_refused(tls_server):
    """Plaintext sent before the server's answer must not pass as if it came under TLS."""
    nbd, address = tls_server
    client = WireClient(address)
    client.greeting()
    client.sock.sendall(b"IHAVEOPT" + struct.pack(">II", OPT_STARTTLS, 0) + b"injected")
    assert client.is_closed()
    wait_for(lambda: nbd.connection_count() == 0, "the connection to end")


@pytest.mark.parametrize("garbage", [b"", b"\x16\x03\x01\x00\x05hello", os.urandom(600)])
def test_garbage_instead_of_tls_ends_only_that_connection(tls_server, pki, garbage):
    nbd, address = tls_server
    client = WireClient(address)
    client.greeting()
    client.option(OPT_STARTTLS)
    assert client.option_reply()[1] == REP_ACK
    try:
        client.sock.sendall(garbage)
        client.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server may hang up before all of it arrived: what is tested here
    wait_for(lambda: nbd.connection_count() == 0, "the connection to end")
    client.close()
    other = WireClient(address)
    other.go("vol", tls=client_context(pki.client))
    assert other.read(0, 512) == bytes(512)
    other.close()


def test_silence_after_starttls_is_dropped_at_the_handshake_deadline(pki, disk):
    with NBDServer(limits=Limits(handshake_timeout=0.3)) as nbd:
        nbd.add_export("vol", lambda: FileDevice(disk))
        address = nbd.listen_tcp(tls_context=server_context(pki.server))
        client = WireClient(address)
        client.greeting()
        client.option(OPT_STARTTLS)
        assert client.option_reply()[1] == REP_ACK
        assert client.is_closed()  # no ClientHello came


def test_stalled_request_under_tls_is_dropped_idle_is_kept(pki, disk):
    with NBDServer(limits=Limits(io_timeout=0.3)) as nbd:
        nbd.add_export("vol", lambda: FileDevice(disk))
        address = nbd.listen_tcp(tls_context=server_context(pki.server))
        idle = WireClient(address)
        idle.go("vol", tls=client_context(pki.client))
        stalled = WireClient(address)
        stalled.go("vol", tls=client_context(pki.client))
        stalled.sock.sendall(b"\x25\x60\x95")  # part of a request header, then nothing
        wait_for(lambda: nbd.connection_count() == 1, "the stalled connection to end")
        assert idle.read(0, 512) == bytes(512)  # idle longer than io_timeout by now
        idle.close()
        stalled.close()


def test_starttls_where_tls_is_not_offered_is_policy_and_negotiation_goes_on(server, sock):
    client = WireClient(sock)
    client.greeting()
    client.option(OPT_STARTTLS)
    assert client.option_reply()[:2] == (OPT_STARTTLS, REP_ERR_POLICY)
    assert client.info_request(OPT_GO, "vol")[-1][0] == REP_ACK
    client.close()
