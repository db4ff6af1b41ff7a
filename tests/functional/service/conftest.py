"""Fixtures: a state path short enough for unix sockets, and a running ``evs-volume``."""

import shutil
import tempfile

import pytest

from tests.functional.service.support import Service


@pytest.fixture
def state():
    path = tempfile.mkdtemp(prefix="evsf-", dir="/tmp")  # unix socket paths are < 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(path + ".home", ignore_errors=True)


@pytest.fixture
def service(state):
    svc = Service(state, f"{state}/service.log").start()
    yield svc
    svc.stop()
