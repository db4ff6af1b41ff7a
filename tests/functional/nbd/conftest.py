"""Fixtures: an in-process NBD server with file-backed exports on a short unix socket path,
and a short state directory for the real service."""

import shutil
import tempfile

import pytest

from evs_driver.filedev import FileDevice
from evs_driver.nbd import Limits, NBDServer
from tests.functional.nbd.nbd_wire import make_disk


@pytest.fixture
def workdir():
    # Unix socket paths are limited to 107 bytes, so stay out of pytest's long tmp paths.
    path = tempfile.mkdtemp(prefix="evsnbd-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state():
    """A state directory for a real ``evs-volume`` (short: its sockets live under it)."""
    path = tempfile.mkdtemp(prefix="evsl-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(path + ".home", ignore_errors=True)


@pytest.fixture
def disk(workdir):
    return make_disk(workdir)


@pytest.fixture
def sock(workdir):
    return f"{workdir}/nbd.sock"


@pytest.fixture
def server(sock, disk):
    """Serves ``vol`` (alias ``vol-id``) read-write and ``ro`` read-only, both on ``disk``."""
    nbd = NBDServer(limits=Limits(handshake_timeout=10))
    nbd.add_export("vol", lambda: FileDevice(disk), aliases=["vol-id"], description="a volume")
    nbd.add_export("ro", lambda: FileDevice(disk, read_only=True), read_only=True)
    nbd.listen_unix(sock)
    yield nbd
    nbd.close()
