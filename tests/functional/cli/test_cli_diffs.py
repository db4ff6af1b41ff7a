"""Changed-block diffs through the real ``evs``: list them, ship them as a stream, apply
the stream to a copy, and refuse streams that do not fit (changing nothing)."""

import os
import random
import shutil
import tempfile

import pytest

from tests.functional.cli.support import (
    evs,
    evs_json,
    exported,
    one_line_error,
    sparse_image,
    volume_with_two_snapshots,
)

MiB = 1024**2
GiB = 1024 * MiB


@pytest.fixture
def source(tmp_path):
    """Volume ``v`` with snapshots s1 and s2 (s2: one extent new, one gone, two rewritten)."""
    state = tmp_path / "state"
    rng = random.Random(16)
    first = {MiB: rng.randbytes(64 * 1024), 500 * MiB: rng.randbytes(8192), 900 * MiB: b"k" * 4096}
    second = {MiB: first[MiB], 700 * MiB: rng.randbytes(3000), 900 * MiB: b"k" * 4096}
    s1, s2 = volume_with_two_snapshots(state, tmp_path, first, second)
    return state, s1, s2


def test_diff_lists_what_changed_as_json_and_a_summary(tmp_path, source):
    state, s1, s2 = source
    diff = evs_json(state, "snapshot", "diff", s2, "--from", s1)
    assert diff["snapshot"] == s2 and diff["from"] == s1
    kinds = {(e["offset"] // MiB, e["kind"]) for e in diff["extents"]}
    assert (500, "zero") in kinds and (700, "data") in kinds
    # (An import rewrites every extent it holds, so 1 MiB and 900 MiB are listed too.)
    assert {e["offset"] // MiB for e in diff["extents"]} == {1, 500, 700, 900}
    assert diff["changed_bytes"] == sum(e["length"] for e in diff["extents"]) < 4 * MiB
    everything = evs_json(state, "snapshot", "diff", s1)
    assert everything["from"] is None and everything["zero_bytes"] == 0
    table = evs(state, "snapshot", "diff", s2, "--from", s1)
    assert table.returncode == 0 and "changed_bytes" in table.stdout


def test_a_full_then_an_incremental_stream_rebuild_s2_byte_for_byte(tmp_path, source):
    state, s1, s2 = source
    full, incremental = tmp_path / "s1.evsdiff", tmp_path / "s1-s2.evsdiff"
    made = evs_json(state, "snapshot", "export", s1, full, "--diff-stream")
    assert made["from"] is None and made["to"]["id"] == s1
    made = evs_json(state, "snapshot", "export", s2, incremental, "--from", s1)
    assert made["from"]["id"] == s1 and made["to"]["id"] == s2
    assert os.path.getsize(incremental) < 200 * 1024  # what changed, not the 1 GiB
    assert os.stat(incremental).st_mode & 0o777 == 0o600
    copy = evs_json(state, "volume", "create", "--size", "1", "--name", "copy")["id"]
    # The incremental first: its base is not there yet.
    line = one_line_error(evs(state, "volume", "import-diff", copy, incremental))
    assert "no copy of" in line and s1 in line
    first = evs_json(state, "volume", "import-diff", copy, full)
    second = evs_json(state, "volume", "import-diff", copy, incremental)
    assert exported(state, "volume", copy, tmp_path / "c.raw") == exported(
        state, "snapshot", s2, tmp_path / "s2.raw"
    )
    assert exported(state, "snapshot", first["snapshot"], tmp_path / "c1.raw") == exported(
        state, "snapshot", s1, tmp_path / "s1.raw"
    )
    line = one_line_error(evs(state, "volume", "import-diff", copy, incremental))
    assert "already holds" in line
    snapshots = evs_json(state, "snapshot", "list", "--volume", copy)
    assert {s["id"] for s in snapshots} == {first["snapshot"], second["snapshot"]}


def test_streams_that_do_not_fit_change_nothing(tmp_path, source):
    state, s1, s2 = source
    full, incremental = tmp_path / "s1.evsdiff", tmp_path / "s1-s2.evsdiff"
    evs_json(state, "snapshot", "export", s1, full, "--diff-stream")
    evs_json(state, "snapshot", "export", s2, incremental, "--from", s1)
    copy = evs_json(state, "volume", "create", "--size", "1", "--name", "copy")["id"]
    evs_json(state, "volume", "import-diff", copy, full)
    before = exported(state, "volume", copy, tmp_path / "before.raw")

    # Altered in the middle of its data: refused by the checksum, the volume put back.
    data = bytearray(incremental.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.evsdiff").write_bytes(bytes(data))
    line = one_line_error(evs(state, "volume", "import-diff", copy, tmp_path / "bad.evsdiff"))
    assert "checksum" in line
    # Cut short: refused too.
    (tmp_path / "cut.evsdiff").write_bytes(incremental.read_bytes()[:-40])
    line = one_line_error(evs(state, "volume", "import-diff", copy, tmp_path / "cut.evsdiff"))
    assert "cut short" in line or "checksum" in line
    # Not a stream at all.
    line = one_line_error(evs(state, "volume", "import-diff", copy, tmp_path / "one.raw"))
    assert "not a usable evs diff stream" in line
    assert exported(state, "volume", copy, tmp_path / "after.raw") == before
    assert len(evs_json(state, "snapshot", "list", "--volume", copy)) == 1

    # Written since its base: refused before anything is applied.
    sparse_image(tmp_path / "other.raw", GiB, {5 * MiB: b"x" * 4096})
    evs_json(state, "volume", "import", copy, tmp_path / "other.raw")
    changed = exported(state, "volume", copy, tmp_path / "changed.raw")
    line = one_line_error(evs(state, "volume", "import-diff", copy, incremental))
    assert "written since" in line
    assert exported(state, "volume", copy, tmp_path / "after.raw") == changed
    # A full stream goes only onto a volume that reads as zeros.
    evs_json(state, "volume", "create", "--size", "1", "--name", "w")
    evs_json(state, "volume", "import", "w", tmp_path / "other.raw")
    line = one_line_error(evs(state, "volume", "import-diff", "w", full))
    assert "empty volume" in line
    line = one_line_error(evs(state, "volume", "import-diff", "v", full))
    assert "already holds" in line  # s1 itself
    assert evs(state, "pool", "check").returncode == 0


def test_export_refuses_what_it_cannot_write(tmp_path, source):
    state, s1, s2 = source
    target = tmp_path / "x.evsdiff"
    line = one_line_error(evs(state, "snapshot", "export", s2, target, "--from", s2))
    assert "itself" in line
    other = evs_json(state, "volume", "create", "--size", "1", "--name", "w")["id"]
    foreign = evs_json(state, "snapshot", "create", other)["id"]
    line = one_line_error(evs(state, "snapshot", "export", s2, target, "--from", foreign))
    assert "one volume" in line
    line = one_line_error(evs(state, "snapshot", "export", s2, target, "--from", s1, "-O", "qcow2"))
    assert "diff stream" in line
    assert not target.exists() and not os.path.exists(f"{target}.partial")


def test_through_the_service_the_same_stream_rebuilds_s2(tmp_path):
    """With ``evs-volume`` running, the service writes and reads the stream files."""
    from tests.functional.service.support import Service

    state = tempfile.mkdtemp(prefix="evsd-", dir="/tmp")  # unix socket paths are < 108 bytes
    service = Service(state, f"{state}/service.log").start()
    try:
        sparse_image(tmp_path / "one.raw", GiB, {3 * MiB: b"1" * 70000})
        sparse_image(tmp_path / "two.raw", GiB, {3 * MiB: b"1" * 70000, 9 * MiB: b"2" * 5000})
        evs_json(state, "volume", "create", "--size", "1", "--name", "v")
        evs_json(state, "volume", "import", "v", tmp_path / "one.raw")
        s1 = evs_json(state, "snapshot", "create", "v")["id"]
        evs_json(state, "volume", "import", "v", tmp_path / "two.raw")
        s2 = evs_json(state, "snapshot", "create", "v")["id"]
        full, incremental = tmp_path / "full.evsdiff", tmp_path / "inc.evsdiff"
        evs_json(state, "snapshot", "export", s1, full, "--diff-stream")
        evs_json(state, "snapshot", "export", s2, incremental, "--from", s1)
        copy = evs_json(state, "volume", "create", "--size", "1")["id"]
        evs_json(state, "volume", "import-diff", copy, full)
        evs_json(state, "volume", "import-diff", copy, incremental)
        assert exported(state, "volume", copy, tmp_path / "c.raw") == exported(
            state, "snapshot", s2, tmp_path / "s2.raw"
        )
        assert "Applied diff" in service.log_text()
    finally:
        service.stop()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(state + ".home", ignore_errors=True)
