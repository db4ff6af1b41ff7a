"""An rbd volume through our own NBD server: ``evs volume serve`` with real qemu-io.

The service runs with an rbd backend (config in the state's HOME, where ``evs`` and
``evs-volume`` look); qemu-io writes with FUA and flushes through the export, the data is in
the RBD image afterwards, and a snapshot taken while it is served (the write barrier) holds
what was acknowledged before it.
"""

import os

import pytest

from tests.functional.nbd.nbd_clients import qemu_io, requires
from tests.functional.service.support import Service, ok
from tests.rbd import cephenv


@pytest.fixture
def rbd_service(tmp_path_factory):
    cephenv.require_cluster()
    state = str(tmp_path_factory.mktemp("s", numbered=True))  # short: unix socket paths
    home = os.path.join(state + ".home", ".evs_driver")
    os.makedirs(home)
    with open(os.path.join(home, "evs_driver.conf"), "w") as f:
        f.write(cephenv.config_text({"ceph": cephenv.settings()}))
    service = Service(state, os.path.join(state, "service.log")).start()
    yield state
    service.stop()


@requires("qemu-io")
def test_an_rbd_volume_served_over_nbd_keeps_what_was_flushed(rbd_service):
    state = rbd_service
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    served = ok(state, "volume", "serve", "v")
    assert served["driver_volume_type"] == "nbd"
    qemu_io(served["uri"], "write -P 0xa1 0 64k", "flush", "write -f -P 0xa2 64k 64k")
    ok(state, "snapshot", "create", "v", "--name", "s")  # while served: the write barrier
    qemu_io(served["uri"], "write -P 0xa3 0 64k", "flush")
    qemu_io(served["uri"], "read -P 0xa3 0 64k", "read -P 0xa2 64k 64k", read_only=True)
    ok(state, "volume", "unserve", "v")
    snap = ok(state, "snapshot", "serve", "s")
    qemu_io(snap["uri"], "read -P 0xa1 0 64k", "read -P 0xa2 64k 64k", read_only=True)
    ok(state, "snapshot", "unserve", "s")
    shown = ok(state, "pool", "show")
    assert shown[0]["location"].startswith("rbd:evs/") and shown[0]["total_volumes"] == 1
