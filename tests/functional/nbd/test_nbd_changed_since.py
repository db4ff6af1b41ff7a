"""``evs:changed-since:S`` with real clients, on the real engine (no service).

The volume is written, snapshotted as ``s1``, then rewritten in part, written further and
discarded in part; ``nbdinfo --map`` and ``qemu-img map`` must show exactly the engine's
diff, and a snapshot's export reports where it differs from an older one.
"""

import json
import os

import pytest

from evs_driver.blockdev import CHANGED
from evs_driver.nbd import NBDServer
from evs_driver.nbd.changes import ChangedSinceNamespace
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice
from tests.functional.nbd.nbd_clients import requires, run

KiB, MiB = 1024, 1024 * 1024
SIZE = 64 * MiB


@pytest.fixture
def pool(workdir):
    p = Pool.create(os.path.join(workdir, "pool"), capacity=256 * MiB)
    p.create_volume("v", SIZE)
    volume = PoolDevice(p, "v")
    volume.write(0, b"a" * MiB)
    volume.write(10 * MiB, b"b" * MiB)
    p.create_snapshot("v", "s1")
    volume.write(10 * MiB + 8 * KiB, b"c" * 4 * KiB)  # rewritten in part
    volume.write(30 * MiB, b"d" * MiB)  # new
    volume.discard(0, MiB)  # gone
    p.create_snapshot("v", "s2")
    volume.write(50 * MiB, b"e" * 64 * KiB)  # after s2: the volume only
    yield p
    p.close()


@pytest.fixture
def served(pool, sock):
    """``v`` and ``s2``, each comparable with the other snapshots."""
    bases = {"v": [("s1", "monday"), ("s2", "tuesday")], "s2": [("s1", "monday")]}
    nbd = NBDServer()
    for name in bases:
        namespace = ChangedSinceNamespace(lambda name=name: bases[name])
        nbd.add_export(name, lambda name=name: PoolDevice(pool, name), namespaces=[namespace])
    nbd.listen_unix(sock)
    yield nbd, bases
    nbd.close()


def engine_diff(pool, old, new) -> list[tuple[int, int]]:
    """(offset, length) of the engine's changed extents, adjacent ones joined."""
    runs: list[tuple[int, int]] = []
    for offset, length, _kind in pool.diff(old, new)[0]:
        if runs and sum(runs[-1]) == offset:
            runs[-1] = (runs[-1][0], runs[-1][1] + length)
        else:
            runs.append((offset, length))
    return runs


def nbdinfo_map(uri: str, context: str) -> list[tuple[int, int, int]]:
    lines = run("nbdinfo", f"--map={context}", uri).stdout.splitlines()
    return [tuple(int(field) for field in line.split()[:3]) for line in lines if line.strip()]


def changed(entries: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    return [(start, length) for start, length, flags in entries if flags & CHANGED]


@requires("nbdinfo")
@pytest.mark.parametrize("ref", ["monday", "s1"])
def test_nbdinfo_map_is_the_engine_diff(served, pool, ref):
    nbd, _bases = served
    entries = nbdinfo_map(nbd.uri("v"), f"evs:changed-since:{ref}")
    assert changed(entries) == engine_diff(pool, "s1", "v")
    assert sum(length for _start, length, _flags in entries) == SIZE  # the whole export
    assert {flags for *_run, flags in entries} == {0, CHANGED}


@requires("qemu-img")
def test_qemu_img_map_with_the_context_as_dirty_bitmap(served, pool, sock):
    nbd, _bases = served
    options = f"driver=nbd,server.type=unix,server.path={sock},export=v"
    for ref, base in (("monday", "s1"), ("tuesday", "s2")):
        bitmap = f"x-dirty-bitmap=evs:changed-since:{ref}"
        out = run("qemu-img", "map", "--output=json", "--image-opts", f"{options},{bitmap}").stdout
        # qemu reads a dirty bitmap's flag 1 as its "hole" flag: changed is data: false.
        dirty = [(e["start"], e["length"]) for e in json.loads(out) if not e["data"]]
        assert dirty == engine_diff(pool, base, "v")


@requires("nbdinfo")
def test_a_snapshot_export_against_an_older_snapshot(served, pool):
    nbd, _bases = served
    entries = nbdinfo_map(nbd.uri("s2"), "evs:changed-since:monday")
    assert changed(entries) == engine_diff(pool, "s1", "s2") != engine_diff(pool, "s1", "v")


@requires("nbdinfo")
def test_list_shows_the_snapshots_and_unknown_ones_are_not_offered(served):
    nbd, _bases = served
    listing = run("nbdinfo", "--list", nbd.uri("v")).stdout
    assert "evs:changed-since:monday" in listing and "evs:changed-since:tuesday" in listing
    refused = run("nbdinfo", "--map=evs:changed-since:friday", nbd.uri("v"), ok=False)
    assert refused.returncode != 0 and "evs:changed-since:friday" in refused.stderr


@requires("nbdinfo")
def test_a_base_deleted_under_the_export_reports_everything_changed(served, pool):
    nbd, bases = served
    pool.delete("s1")  # the list still names it, as before a catalog update
    assert nbdinfo_map(nbd.uri("s2"), "evs:changed-since:monday") == [(0, SIZE, CHANGED)]
    bases["s2"] = []
    refused = run("nbdinfo", "--map=evs:changed-since:monday", nbd.uri("s2"), ok=False)
    assert refused.returncode != 0
