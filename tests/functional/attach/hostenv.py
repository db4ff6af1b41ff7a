"""The initiator side of the attach tests in the guest: iscsid, udevd, os-brick, fio, I/O.

Everything here drives real kernel parts (open-iscsi, nvme-cli, the nbd, LIO and nvmet
modules) and os-brick's real connectors; only the guest's harness makes them available.
"""

import contextlib
import os
import subprocess
import time
import uuid

from oslo_config import cfg

UDEVD = "/usr/lib/systemd/systemd-udevd"
ISCSI_DIRS = (
    "/etc/iscsi",
    "/var/lib/iscsi/nodes",
    "/var/lib/iscsi/send_targets",
    "/var/lib/iscsi/ifaces",
    "/run/lock/iscsi",
)
HOST_IQN = "iqn.2026-01.org.evs-tests:host"


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command, returning its output; raise with its stderr when it fails and ``check``."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def start_daemons() -> None:
    """udevd (os-brick needs /dev/disk/by-id) and iscsid, as systemd would start them."""
    for path in ISCSI_DIRS:
        os.makedirs(path, exist_ok=True)
    with open("/etc/iscsi/initiatorname.iscsi", "w") as f:
        f.write(f"InitiatorName={HOST_IQN}\n")
    os.makedirs("/etc/nvme", exist_ok=True)
    host_uuid = str(uuid.uuid4())
    with open("/etc/nvme/hostnqn", "w") as f:
        # The guest has no SMBIOS UUID: without this every generated host NQN is zeros.
        f.write(f"nqn.2014-08.org.nvmexpress:uuid:{host_uuid}\n")
    with open("/etc/nvme/hostid", "w") as f:
        f.write(host_uuid + "\n")
    run(UDEVD, "--daemon")
    run("udevadm", "trigger", "--action=add")
    run("udevadm", "settle", "-t", "30", check=False)
    run("iscsid")


def stop_daemons() -> None:
    """Log every iSCSI session out and stop the daemons."""
    run("iscsiadm", "-m", "node", "--logoutall=all", check=False)
    run("pkill", "-x", "iscsid", check=False)
    run("udevadm", "control", "--exit", check=False)


def host_nqn() -> str:
    """This host's NVMe host NQN."""
    with open("/etc/nvme/hostnqn") as f:
        return f.read().strip()


def os_brick_connectors(lock_path: str) -> dict:
    """os-brick set up as a service sets it up, with privsep forked (no sudo in the guest)."""
    import os_brick
    from os_brick.initiator import connector
    from os_brick.privileged import default as brick_privileged
    from oslo_concurrency import lockutils
    from oslo_privsep import priv_context

    cfg.CONF([], project="evs_attach_tests", default_config_files=[], default_config_dirs=[])
    lockutils.set_defaults(lock_path)
    os_brick.setup(cfg.CONF)
    brick_privileged.set_client_mode(True)
    brick_privileged.start(priv_context.Method.FORK)
    factory = connector.InitiatorConnector.factory
    return {
        "iscsi": factory("ISCSI", root_helper=None, use_multipath=False),
        "nvmeof": factory("NVME", root_helper=None, use_multipath=False),
        "properties": connector.get_connector_properties(None, "127.0.0.1", False, False),
    }


def fio_verify_args(device: str, size: str, seed: int, extra: tuple = ()) -> list[str]:
    """fio writing ``size`` of ``device`` in crc32c-verified 4 KiB blocks, then reading them."""
    return [
        "fio",
        "--name=verify",
        f"--filename={device}",
        "--rw=randwrite",
        "--bs=4k",
        "--direct=1",
        "--ioengine=libaio",
        "--iodepth=8",
        f"--size={size}",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        f"--randseed={seed}",
        *extra,
    ]


def fio_verify(device: str, size: str = "8M", seed: int = 1, extra: tuple = ()) -> None:
    """Run ``fio_verify_args``; fail with fio's report when a block does not verify."""
    run(*fio_verify_args(device, size, seed, extra), timeout=600)


def read_bytes(device: str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``device`` at ``offset``, bypassing the page cache."""
    fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
    try:
        import mmap

        buf = mmap.mmap(-1, length)
        os.preadv(fd, [buf], offset)
        return bytes(buf)
    finally:
        os.close(fd)


def write_bytes(device: str, offset: int, data: bytes) -> None:
    """Write ``data`` (a multiple of 4 KiB) to ``device`` at ``offset`` with O_DIRECT|O_DSYNC."""
    import mmap

    fd = os.open(device, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    try:
        buf = mmap.mmap(-1, len(data))
        buf.write(data)
        os.pwritev(fd, [buf], offset)
    finally:
        os.close(fd)


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextlib.contextmanager
def iscsi_session(ip: str, port: int, iqn: str, iface_iqn: str, user: str, password: str):
    """A login by ``iscsiadm`` as initiator ``iface_iqn`` (its own iface); yields the result."""
    iface = "evs-" + str(abs(hash(iface_iqn)) % 10**8)
    run("iscsiadm", "-m", "iface", "-I", iface, "-o", "new", check=False)
    run(
        "iscsiadm",
        "-m",
        "iface",
        "-I",
        iface,
        "-o",
        "update",
        "-n",
        "iface.initiatorname",
        "-v",
        iface_iqn,
    )
    portal = f"{ip}:{port}"
    node = ("iscsiadm", "-m", "node", "-T", iqn, "-p", portal, "-I", iface)
    run(*node, "-o", "new")
    for key, value in (
        ("node.session.auth.authmethod", "CHAP"),
        ("node.session.auth.username", user),
        ("node.session.auth.password", password),
        ("node.session.initial_login_retry_max", "1"),
    ):
        run(*node, "-o", "update", "-n", key, "-v", value)
    login = run(*node, "--login", check=False, timeout=60)
    try:
        yield login
    finally:
        run(*node, "--logout", check=False)
        run(*node, "-o", "delete", check=False)
        run("iscsiadm", "-m", "iface", "-I", iface, "-o", "delete", check=False)


def session_disk(initiator: str) -> str | None:
    """The disk (``/dev/sdX``) of the logged-in iSCSI session of ``initiator``, if any."""
    out = run("iscsiadm", "-m", "session", "-P", "3", check=False).stdout
    current = None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Iface Initiatorname:"):
            current = line.split(":", 1)[1].strip()
        elif line.startswith("Attached scsi disk") and current == initiator:
            return "/dev/" + line.split()[3]
    return None


def nvme_connect(nqn: str, host_nqn: str, port: int = 4420) -> subprocess.CompletedProcess:
    """``nvme connect`` over TCP on loopback as host ``host_nqn``."""
    return run(
        "nvme",
        "connect",
        "-t",
        "tcp",
        "-a",
        "127.0.0.1",
        "-s",
        str(port),
        "-n",
        nqn,
        "-q",
        host_nqn,
        check=False,
        timeout=60,
    )


def nvme_disconnect(nqn: str) -> None:
    """Disconnect every controller of subsystem ``nqn``."""
    run("nvme", "disconnect", "-n", nqn, check=False)
