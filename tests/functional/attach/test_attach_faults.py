"""kill -9 of evs-volume with I/O in flight on an attached volume: the I/O waits, then resumes.

The volume is attached over iSCSI and connected with os-brick; fio writes and verifies
through it while the service is killed and started again. The kernel NBD device under
the target keeps its requests (``nbd_io_timeout`` retries them, ``nbd_dead_connection_timeout``
bounds the wait) until the restarted service reconnects it, so the initiator sees a
stall, not an error, and every acknowledged write reads back.
"""

import os
import signal
import subprocess
import time

from tests.functional.attach import flows, hostenv
from tests.lvm_guest import guestenv


def test_kill9_with_io_in_flight_stalls_then_resumes_without_losing_writes(attach_host, services):
    service = services.start()
    volume = service.request("volume_create", size=1, backend="local")["id"]
    host = flows.Host(attach_host, service.manager)
    info, device = host.attach(volume, "iscsi")
    # An initiator of a restartable target allows for the restart (the default is 30 s).
    with open(f"/sys/block/{os.path.basename(device)}/device/timeout", "w") as f:
        f.write("120")
    services.stop()  # the attachment stays; its device waits for the next service
    services.start_child()
    fio = subprocess.Popen(
        # FUA writes (O_SYNC): an acknowledged write is a durable one. Without a flush or
        # FUA the volume's write cache is volatile, like a disk's, and kill -9 may drop it.
        hostenv.fio_verify_args(device, "12M", seed=9, extra=("--sync=1",)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(3)
    assert fio.poll() is None, (
        "fio ended before the kill: " + fio.stdout.read() + services.log_tail()
    )
    services.child.send_signal(signal.SIGKILL)
    services.child.wait(30)
    killed_at = time.monotonic()
    time.sleep(2)  # requests queue on the dead connection meanwhile
    services.start_child()
    output, _ = fio.communicate(timeout=600)
    stalled = time.monotonic() - killed_at
    assert fio.returncode == 0, output + services.log_tail()
    assert "err= 0" in output, output
    services.child.terminate()
    services.child.wait(60)
    service = services.start()
    assert service.request("pool_check") == {"local": [], "thin": []}
    try:
        hostenv.fio_verify(device, size="12M", seed=9, extra=("--verify_only",))
    except RuntimeError as exc:
        raise AssertionError(f"{exc}{services.log_tail(80)}") from None
    host.manager = service.manager
    host.detach(volume, info, device)
    guestenv.save_result("attach-kill9.txt", f"fio finished {stalled:.1f}s after the kill -9\n")
