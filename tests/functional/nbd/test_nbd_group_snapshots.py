"""Issue 16's proof for group snapshots: crash-consistent across volumes served over NBD.

Two volumes of one group are served by the real ``evs-volume``. A writer sends numbered
4 KiB records over NBD, alternating between the two volumes, each one acknowledged before
the next is sent, while the test takes group snapshots through the control socket. Then
each group snapshot, read back over NBD, must hold exactly a prefix of the record
sequence, split across its two members: every record acknowledged before the snapshot call
began, none sent after it returned, and no record without every one before it. With fio
on the host, fio's own verify runs on both volumes during group snapshots as well.
"""

import os
import random
import struct
import subprocess
import threading
import time

import pytest

from evs_driver.cmd.client import ServiceClient
from evs_driver.service import protocol
from tests.functional.nbd.nbd_clients import requires
from tests.functional.nbd.nbd_wire import WireClient
from tests.functional.service.support import Service, ok

RECORD = 4096
MAGIC = b"EVSREC16"
GROUP_SNAPSHOTS = 6  # under the default max_snapshots_per_volume (7)
READ_CHUNK = 1024 * 1024


def record(number: int) -> bytes:
    """Record ``number``: its number and volume in a header, then a filler of its own."""
    head = MAGIC + struct.pack(">QQ", number, number % 2)
    filler = bytes([number % 251 + 1]) * (RECORD - len(head))
    return head + filler


def slot(number: int) -> int:
    """Where record ``number`` goes on its volume (volume ``number % 2``)."""
    return (number // 2) * RECORD


class Writer(threading.Thread):
    """Sends the records in order, one in flight at a time, noting when each was sent and
    when its reply came (monotonic clock)."""

    def __init__(self, clients: list[WireClient]):
        super().__init__(daemon=True)
        self.clients = clients
        self.sent: list[float] = []
        self.acked: list[float] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            number = 0
            while not self.stop.is_set():
                client = self.clients[number % 2]
                self.sent.append(time.monotonic())
                error = client.write(slot(number), record(number), cookie=number + 1)
                self.acked.append(time.monotonic())
                assert error == 0, f"record {number}: NBD error {error}"
                number += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


def connect(served: dict) -> WireClient:
    client = WireClient(served["socket"], timeout=60)
    client.go(served["export_name"])
    return client


def read_all(served: dict, length: int) -> bytes:
    client = connect(served)
    try:
        return b"".join(
            client.read(offset, min(READ_CHUNK, length - offset))
            for offset in range(0, length, READ_CHUNK)
        )
    finally:
        client.close()


def records_in(image: bytes, volume: int) -> set[int]:
    """The numbers of the whole, correct records on one member's image."""
    found = set()
    for offset in range(0, len(image), RECORD):
        block = image[offset : offset + RECORD]
        if block == bytes(RECORD):
            continue
        number, tag = struct.unpack(">QQ", block[len(MAGIC) : len(MAGIC) + 16])
        assert block == record(number) and tag == volume and slot(number) == offset, (
            f"volume {volume} at {offset}: a torn or misplaced record"
        )
        found.add(number)
    return found


@pytest.fixture
def group(state):
    """A running ``evs-volume`` serving volumes a and b of group g over NBD: a client on
    its control socket, and what ``volume serve`` said of each volume."""
    service = Service(state, f"{state}/service.log").start()
    control = None
    try:
        for name in ("a", "b"):
            ok(state, "volume", "create", "--size", "1", "--name", name)
        ok(state, "group", "create", "--volume", "a", "--volume", "b", "--name", "g")
        control = ServiceClient.connect(os.path.join(state, protocol.SOCKET_NAME))
        volumes = [control.call("volume_serve", name) for name in ("a", "b")]
        yield control, volumes
    finally:
        if control is not None:
            control.close()
        service.stop()


def test_each_group_snapshot_holds_exactly_the_writes_acknowledged_before_it(group):
    control, volumes = group
    clients = [connect(served) for served in volumes]
    try:
        writer = Writer(clients)
        writer.start()

        taken = []  # (group snapshot, when the call began, when it returned)
        rng = random.Random(16)
        for _ in range(GROUP_SNAPSHOTS):
            target = len(writer.acked) + rng.randint(1, 40)  # records between snapshots
            while len(writer.acked) < target and writer.is_alive():
                time.sleep(0.001)
            began = time.monotonic()
            group_snapshot = control.call("group_snapshot", "g")
            taken.append((group_snapshot, began, time.monotonic()))
        writer.stop.set()
        writer.join(60)
        assert writer.error is None, writer.error
        total = len(writer.acked)
        assert total > 2 * GROUP_SNAPSHOTS

        length = slot(total + 1) + RECORD
        members = [volumes[0]["volume"], volumes[1]["volume"]]
        counts = []
        for group_snapshot, began, returned in taken:
            held = set()
            for volume, volume_id in enumerate(members):
                served = control.call("snapshot_serve", group_snapshot["snapshots"][volume_id])
                held |= records_in(read_all(served, length), volume)
            count = len(held)
            # A prefix: no record without every record before it, on either member.
            assert held == set(range(count)), f"{group_snapshot['id']}: not a prefix"
            acked_before = sum(1 for t in writer.acked if t < began)
            sent_before_end = sum(1 for t in writer.sent if t <= returned)
            assert acked_before <= count <= sent_before_end, (
                f"{group_snapshot['id']} holds {count} records; {acked_before} were acknowledged "
                f"before it began and {sent_before_end} sent before it returned"
            )
            counts.append(count)
        # The snapshots cut the sequence at different places, not all before or after it.
        assert len(set(counts)) > 1, counts
    finally:
        for client in clients:
            client.close()


FIO_JOB = (
    "--ioengine=nbd",
    "--rw=randwrite",
    "--bs=4k",
    "--iodepth=8",
    "--size=8M",
    "--verify=crc32c",
    "--verify_fatal=1",
    "--verify_state_save=0",  # no state files in the working directory
)


def fio(*jobs: tuple[str, str], extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """fio through NBD on each ``(name, uri)``: random 4 KiB writes, each block checked."""
    cmd = ["fio", *FIO_JOB, *extra]
    for name, uri in jobs:
        cmd += [f"--name={name}", f"--uri={uri}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@requires("fio")
def test_fio_verify_on_both_members_while_group_snapshots_are_taken(group):
    """fio verifies every block it wrote on both volumes, group snapshots taken meanwhile;
    then the group snapshot taken after it holds every one of those blocks on both members
    (fio's verify-only pass, run on the member snapshots)."""
    control, volumes = group
    writing = fio(("a", volumes[0]["uri"]), ("b", volumes[1]["uri"]), extra=("--do_verify=1",))
    during = 0
    while writing.poll() is None and during < GROUP_SNAPSHOTS - 1:
        control.call("group_snapshot", "g")
        during += 1
    output, _ = writing.communicate(timeout=120)
    assert writing.returncode == 0, output

    after = control.call("group_snapshot", "g")
    snapshots = [control.call("snapshot_serve", after["snapshots"][v["volume"]]) for v in volumes]
    checking = fio(
        ("a", snapshots[0]["uri"]),
        ("b", snapshots[1]["uri"]),
        extra=("--verify_only",),  # (not --readonly: fio then skips the job, exiting 0)
    )
    output, _ = checking.communicate(timeout=120)
    assert checking.returncode == 0 and "READ: bw=" in output, output
    print(f"{during} group snapshot(s) taken while fio wrote")
