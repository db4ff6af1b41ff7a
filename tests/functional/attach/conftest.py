"""Fixtures of the attach tests: a volume service with a local and an lvm_thin backend.

They run only in the QEMU guest (`tox -e lvm`), where the kernel has nbd, LIO and nvmet,
and the initiators (open-iscsi, nvme-cli, os-brick) are real.
"""

import os
import shutil
import tempfile

import pytest

from tests.functional.attach import hostenv
from tests.functional.attach.servicectl import VG, Services
from tests.lvm_guest import guestenv


@pytest.fixture(scope="session")
def attach_host():
    """Daemons up, os-brick set up, and a volume group on the guest's fourth disk."""
    if not guestenv.in_guest():
        pytest.skip(guestenv.SKIP_REASON)
    hostenv.start_daemons()
    disk = guestenv.disks()[3]
    guestenv.make_vg(VG, disk)
    work = tempfile.mkdtemp(prefix="evs-attach-")
    connectors = hostenv.os_brick_connectors(os.path.join(work, "locks"))
    yield {"work": work, **connectors}
    # The kernel's side of what happened (LIO logins, nbd reconnects), kept in the run share.
    guestenv.save_result("attach-dmesg.txt", hostenv.run("dmesg", check=False).stdout)
    hostenv.stop_daemons()
    guestenv.remove_vg(VG, disk)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def services(attach_host, tmp_path):
    """A fresh state path; what the test leaves attached is detached and every volume deleted
    at the end (the volume group is shared by the session: a later test's pool check of the
    thin backend must not find this test's LVs)."""
    found = Services(str(tmp_path))
    yield found
    if found.child is not None and found.child.poll() is None:
        found.child.terminate()
        found.child.wait(60)
    if found.current is None:
        found.start()
    manager = found.current.manager
    for volume in manager.list_volumes():
        if volume.status == "in-use":
            manager.detach_volume(volume.id, {})
    for volume in manager.list_volumes():
        manager.delete_volume(volume.id, cascade=True)
    found.stop()


@pytest.fixture
def service(services):
    """The volume service, in this process."""
    return services.start()
