"""What the files under the state path can do to an operator, and what ``evs`` says then:
a damaged catalog, a full file system, a pool's data file cut short (real processes,
real files; the full file system is a real tmpfs, so these tests need root)."""

import os
import shutil
import subprocess

import pytest

from tests.functional.cli.support import evs, evs_json, one_line_error

MiB = 1024**2


@pytest.fixture
def small_fs(tmp_path):
    """A 64 MiB tmpfs; skipped with the reason where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize(
    "damage",
    ["overwritten header", "cut in half", "emptied"],
)
def test_a_damaged_catalog_is_named_and_left_as_it_is(tmp_path, damage):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    evs_json(state, "snapshot", "create", "v", "--name", "s")
    path = state / "catalog.sqlite"
    data = path.read_bytes()
    if damage == "overwritten header":
        data = b"\xff" * 100 + data[100:]
    elif damage == "cut in half":
        data = data[: len(data) // 2]
    else:
        data = b""
    path.write_bytes(data)
    for sidecar in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (state / sidecar).unlink(missing_ok=True)
    for command in (("volume", "list"), ("volume", "create", "--size", "1")):
        line = one_line_error(evs(state, *command))
        assert str(path) in line and ("damaged" in line or "restore" in line), line
    assert path.read_bytes() == data  # the failed commands did not rewrite it


def test_a_full_file_system_fails_cleanly_with_enospc_wording(small_fs):
    state = small_fs / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    pool = evs_json(state, "pool", "show")[0]
    assert pool["total_bytes"] <= 64 * MiB  # not the pool's 100 GiB sparse promise
    assert pool["free_bytes"] <= 64 * MiB
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\1" * MiB)
                f.flush()
        except OSError:
            pass  # the file system is full now
    for command in (
        ("volume", "create", "--size", "1", "--name", "w"),
        ("snapshot", "create", "v", "--name", "s"),
    ):
        line = one_line_error(evs(state, *command))
        assert "full" in line.lower(), line
    filler.unlink()
    assert [v["name"] for v in evs_json(state, "volume", "list")] == ["v"]
    statuses = {v["status"] for v in evs_json(state, "volume", "list")}
    statuses |= {s["status"] for s in evs_json(state, "snapshot", "list")}
    assert statuses <= {"available"}, statuses
    assert evs(state, "pool", "check").returncode == 0
    evs_json(state, "snapshot", "create", "v", "--name", "s")  # space is back: works again


def test_a_truncated_data_file_makes_the_backend_down(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    image = tmp_path / "a.raw"
    image.write_bytes(b"a" * 4 * MiB)
    evs_json(state, "volume", "import", "v", str(image))
    data = state / "pools" / "local" / "data"
    os.truncate(data, MiB)
    line = one_line_error(evs(state, "volume", "export", "v", str(tmp_path / "out.raw")))
    assert str(data) in line, line
    shown = evs_json(state, "pool", "show")[0]
    assert shown["state"] == "down" and str(data) in shown["reason"]
    check = evs(state, "pool", "check")
    assert check.returncode == 1 and str(data) in check.stdout
    assert not (tmp_path / "out.raw").exists()
    shutil.rmtree(state / "pools" / "local")  # still known: never silently replaced
    line = one_line_error(evs(state, "volume", "create", "--size", "1"))
    assert "missing or empty" in line, line
