"""A volume attached over iSCSI, NVMe/TCP or as a local device keeps every data guarantee.

os-brick's real ISCSIConnector and NVMeOFConnector connect with the connection info the
driver returns; fio verifies through the device; a snapshot taken while a writer runs
holds exactly a prefix of its writes, every acknowledged one included; after a detach
and a revert to that snapshot, the reattached device reads the snapshot's bytes.
"""

import os
import re

import pytest

from tests.functional.attach import flows, hostenv

# 256 MiB: far more than the writer gets through while a snapshot is taken, on any guest;
# only the blocks it reached are read back, so the bound costs nothing.
WRITER_BLOCKS = 65536
OVERWRITE_BLOCKS = 256  # 1 MiB written after the snapshot; the revert must undo all of it


def snapshot_record(manager, snapshot: dict):
    """The catalog record of a snapshot the client returned."""
    return manager.get_snapshot(snapshot["id"])


@pytest.mark.parametrize("backend", ["local", "thin"])
@pytest.mark.parametrize("protocol", ["iscsi", "nvmeof", "local"])
def test_attached_volume_keeps_data_snapshots_and_reverts(
    attach_host, service, tmp_path, protocol, backend
):
    manager = service.manager
    host = flows.Host(attach_host, manager)
    volume = service.request("volume_create", size=1, backend=backend, name=f"{protocol}-{backend}")
    info, device = host.attach(volume["id"], protocol)
    assert manager.get_volume(volume["id"]).status == "in-use"
    if protocol == "iscsi":
        assert re.fullmatch(r"/dev/sd[a-z]+", device), device
        assert info["data"]["auth_method"] == "CHAP"
    elif protocol == "nvmeof":
        assert re.fullmatch(r"/dev/nvme\d+n\d+", device), device
    hostenv.fio_verify(device, size="4M")

    # A snapshot while a writer runs: every write acknowledged before it, none after.
    writer = flows.SequentialWriter(device, WRITER_BLOCKS, generation=1)
    writer.start()
    hostenv.wait_for(lambda: writer.acknowledged >= 32, 120, "the writer's first writes")
    before = writer.acknowledged
    snapshot = service.request("snapshot_create", volume["id"], name="while-writing")
    after = writer.acknowledged
    writer.stop.set()
    writer.join(120)
    assert not writer.is_alive(), "the writer did not stop"
    assert writer.error is None, writer.error
    assert writer.acknowledged < WRITER_BLOCKS, "the writer finished before the snapshot"
    # Every block the writer reached, one it never did, and the range overwritten below.
    checked_blocks = min(WRITER_BLOCKS, max(writer.acknowledged + 1, OVERWRITE_BLOCKS))
    checked = checked_blocks * flows.BLOCK
    image = str(tmp_path / "snapshot.raw")  # the snapshot's first bytes, kept aside
    record = snapshot_record(manager, snapshot)
    with (
        manager.lock(backend) as driver,
        driver.open_device(record, False) as dev,
        open(image, "wb") as f,
    ):
        f.write(dev.read(0, checked))
    prefix = flows.new_prefix(image, checked_blocks, generation=1)
    assert before <= prefix <= after + 1, (before, prefix, after)

    # Overwrite, detach, revert to the snapshot, attach again: the snapshot's bytes.
    hostenv.write_bytes(device, 0, flows.pattern(0, generation=2) * OVERWRITE_BLOCKS)
    host.detach(volume["id"], info, device)
    assert manager.get_volume(volume["id"]).status == "available"
    service.request("volume_revert", volume["id"], snapshot["id"])
    info, device = host.attach(volume["id"], protocol)
    flows.cmp(device, image, checked)
    host.detach(volume["id"], info, device)
    assert not [row for row in service.manager.block_exports() if row["volume"] == volume["id"]], (
        "something left behind after the detach"
    )
    service.request("snapshot_delete", snapshot["id"])
    service.request("volume_delete", volume["id"])
    os.unlink(image)
