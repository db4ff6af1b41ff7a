"""The parsers read what this LVM really prints; the output is kept for the host unit tests.

Each report is saved to the run share (``.cache/lvm-guest/run/results/``); copies of them
are the fixtures of ``tests/unit/lvm``.
"""

import pytest

from evs_driver import exception
from evs_driver.backends.lvm import report
from evs_driver.backends.lvm.executor import LvmExecutor
from tests.lvm_guest import guestenv

pytestmark = pytest.mark.skipif(not guestenv.in_guest(), reason=guestenv.SKIP_REASON)

MiB = 1 << 20


def test_lvs_vgs_and_pool_status_parse(lvm_backend, lvm_vg, new_id):
    vol, snap = new_id(), new_id()
    lvm_backend.create_volume(vol, 16 * MiB)
    with lvm_backend.open_device(vol, writable=True) as dev:
        dev.write(0, b"\x01" * MiB)
    lvm_backend.create_snapshot(vol, snap)
    lvs = guestenv.lvm(
        "lvs", "-a", "--reportformat", "json", "--units", "b", "--nosuffix",
        "-o", ",".join(report.LV_FIELDS), lvm_vg,
    )  # fmt: skip
    vgs = guestenv.lvm(
        "vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
        "-o", ",".join(report.VG_FIELDS), lvm_vg,
    )  # fmt: skip
    status = guestenv.lvm("dmsetup", "status", f"{lvm_vg.replace('-', '--')}-pool-tpool")
    guestenv.save_result("lvs.json", lvs)
    guestenv.save_result("vgs.json", vgs)
    guestenv.save_result("pool-status.txt", status)

    by_name = {lv.name: lv for lv in report.parse_lvs(lvs)}
    pool, volume = by_name["pool"], by_name[f"volume-{vol}"]
    snapshot = by_name[f"_snapshot-{snap}"]
    assert pool.segtype == "thin-pool" and pool.when_full == "error"
    assert volume.pool == "pool" and volume.size == 16 * MiB and volume.active
    assert snapshot.tag_value("evs-origin") == vol and snapshot.skips_activation
    assert snapshot.thin_id is not None and snapshot.thin_id != volume.thin_id
    (vg,) = report.parse_vgs(vgs)
    assert vg.name == lvm_vg and vg.extent_size == 4 * MiB and 0 < vg.free < vg.size
    parsed = report.parse_pool_status(status)
    assert parsed.mode == "rw" and not parsed.failed and parsed.used_data_blocks > 0


@pytest.mark.parametrize(
    ("cmd", "error"),
    [
        (("lvs", "evs-functional/nope"), exception.NotFound),
        (("vgs", "no-such-vg"), exception.NotFound),
        (("lvcreate", "-s", "-n", "x", "evs-functional/nope"), exception.NotFound),
        (("lvcreate", "-y", "-L", "4m", "-n", "pool", "evs-functional"), exception.AlreadyExists),
        (
            ("lvcreate", "-y", "-L", "4m", "-n", "snapshot1", "evs-functional"),
            exception.BackendError,
        ),
        (("lvcreate", "-y", "-L", "64g", "-n", "huge", "evs-functional"), exception.PoolFull),
    ],
)
def test_real_lvm_errors_map_to_project_errors(lvm_backend, cmd, error):
    executor = LvmExecutor("lvm")
    with pytest.raises(error) as info:
        executor.run(*cmd)
    assert info.value.lvm_message
    name = "stderr-" + "-".join(cmd[:1] + (error.__name__,)) + ".txt"
    guestenv.save_result(name, info.value.__cause__.stderr)  # LVM's raw stderr
