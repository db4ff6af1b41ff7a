"""Test certificates made with the openssl command: a CA, server and client credentials.

Directories follow QEMU's tls-creds-x509 layout, which libnbd's ``tls-certificates=``
reads too: a server directory (ca-cert.pem, server-cert.pem, server-key.pem) and client
directories (ca-cert.pem, client-cert.pem, client-key.pem).
"""

import dataclasses
import os
import shutil
import subprocess


@dataclasses.dataclass(frozen=True)
class PKI:
    server: str  # the server's credentials, client certificates checked against our CA
    client: str  # a client trusting our CA, with a certificate our CA signed
    no_client_cert: str  # a client trusting our CA, without a certificate of its own
    wrong_ca: str  # a client with our client certificate that trusts another CA
    stranger: str  # a client trusting our CA, with a certificate another CA signed


def _openssl(directory: str, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _authority(directory: str, name: str) -> None:
    _openssl(
        directory,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}-cert.pem", "-days", "2",
        "-subj", f"/CN=evs test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _leaf(directory: str, ca: str, name: str, extensions: str) -> None:
    with open(os.path.join(directory, f"{name}.ext"), "w") as f:
        f.write(extensions)
    _openssl(
        directory,
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        directory,
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}-cert.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


def make_pki(directory: str) -> PKI:
    """Fresh credentials under ``directory``."""
    work = os.path.join(directory, "pki")
    os.makedirs(work)
    _authority(work, "ca")
    _authority(work, "other-ca")
    _leaf(work, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")  # fmt: skip
    client_ext = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
    _leaf(work, "ca", "client", client_ext)
    _leaf(work, "other-ca", "stranger", client_ext)
    names = ("server", "client", "bare", "wrong-ca", "stranger")
    pki = PKI(*(os.path.join(directory, name) for name in names))
    layout = {
        pki.server: {"ca-cert.pem": "ca-cert.pem", "server-cert.pem": "server-cert.pem",
                     "server-key.pem": "server-key.pem"},
        pki.client: {"ca-cert.pem": "ca-cert.pem", "client-cert.pem": "client-cert.pem",
                     "client-key.pem": "client-key.pem"},
        pki.no_client_cert: {"ca-cert.pem": "ca-cert.pem"},
        pki.wrong_ca: {"ca-cert.pem": "other-ca-cert.pem", "client-cert.pem": "client-cert.pem",
                       "client-key.pem": "client-key.pem"},
        pki.stranger: {"ca-cert.pem": "ca-cert.pem", "client-cert.pem": "stranger-cert.pem",
                       "client-key.pem": "stranger-key.pem"},
    }  # fmt: skip
    for target, files in layout.items():
        os.makedirs(target, mode=0o700)
        for name, source in files.items():
            shutil.copy(os.path.join(work, source), os.path.join(target, name))
            os.chmod(os.path.join(target, name), 0o600)
    return pki
