"""server_context: credentials in QEMU's layout, and a clear error naming each bad file."""

import os
import shutil
import ssl

import pytest

from evs_driver import exception
from evs_driver.nbd.tls import server_context
from tests.functional.nbd.nbd_clients import requires
from tests.functional.nbd.tls_certs import make_pki

pytestmark = requires("openssl")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def creds(pki, tmp_path):
    """A private copy of the server directory, free to break."""
    return shutil.copytree(pki.server, tmp_path / "creds")


def test_good_credentials_need_client_certificates_by_default(creds):
    context = server_context(str(creds))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_context(str(creds), verify_peer=False).verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("name", ["server-cert.pem", "server-key.pem", "ca-cert.pem"])
def test_a_missing_file_is_named(creds, name):
    os.unlink(creds / name)
    with pytest.raises(exception.InvalidInput, match=f"{creds / name} is missing"):
        server_context(str(creds))


def test_without_peer_verification_no_ca_is_needed(creds):
    os.unlink(creds / "ca-cert.pem")
    server_context(str(creds), verify_peer=False)


def test_a_key_every_user_can_read_is_refused(creds):
    os.chmod(creds / "server-key.pem", 0o644)
    with pytest.raises(exception.InvalidInput, match="readable by every user; chmod o-r"):
        server_context(str(creds))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("server-cert.pem", b"not a certificate", "cannot use .*server-cert.pem"),
        ("server-key.pem", b"not a key", "cannot use .*server-key.pem"),
        ("ca-cert.pem", b"not a CA", "cannot use .*ca-cert.pem"),
    ],
)
def test_a_damaged_file_is_named(creds, name, content, message):
    (creds / name).write_bytes(content)
    with pytest.raises(exception.InvalidInput, match=message):
        server_context(str(creds))


def test_a_key_of_another_certificate_is_refused(creds, pki):
    shutil.copy(os.path.join(pki.client, "client-key.pem"), creds / "server-key.pem")
    with pytest.raises(exception.InvalidInput, match="cannot use .*server-cert.pem with"):
        server_context(str(creds))
