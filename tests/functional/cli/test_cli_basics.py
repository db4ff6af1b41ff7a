"""The first commands a newcomer runs, output formats, data in and out, the walkthrough."""

import json
import os

from tests.functional.cli.support import (
    env_for,
    evs,
    evs_json,
    evs_on_terminal,
    one_line_error,
)

MiB = 1024**2


def test_first_command_works_with_no_config(tmp_path):
    state = tmp_path / "state"
    result = evs(state, "pool", "show")
    assert result.returncode == 0, result.stderr
    assert str(state) in result.stdout
    assert os.path.isdir(state / "pools" / "local")
    rows = evs_json(state, "pool", "show")
    assert rows[0]["backend"] == "local" and rows[0]["total_volumes"] == 0


def test_volume_and_snapshot_lifecycle_table_and_json(tmp_path):
    state = tmp_path / "state"
    vol = evs_json(state, "volume", "create", "--size", "1", "--name", "v1", "--property", "a=b")
    assert vol["status"] == "available" and vol["metadata"] == {"a": "b"}
    snap = evs_json(state, "snapshot", "create", "v1", "--name", "s1")
    assert snap["size"] == 1 and snap["exclusive_bytes"] == 0
    listed = evs(state, "snapshot", "list", "--volume", "v1")
    assert "exclusive_bytes" in listed.stdout and snap["id"] in listed.stdout
    shown = evs_json(state, "volume", "show", vol["id"])
    assert shown["snapshots"] == 1 and shown["name"] == "v1"
    assert evs(state, "volume", "delete", "v1", "--cascade").returncode == 0
    assert evs_json(state, "volume", "list") == []
    assert evs(state, "pool", "check").returncode == 0


def test_import_export_round_trip_is_sparse(tmp_path):
    state = tmp_path / "state"
    image = tmp_path / "in.raw"
    with open(image, "wb") as f:
        f.truncate(3 * MiB)
        f.seek(MiB + 512)
        f.write(b"hello" * 1000)
        f.seek(3 * MiB - 5)
        f.write(b"tail!")
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    result = evs_json(state, "volume", "import", "v", image)
    # Only the file's data is written: what its extents hold (file-system blocks), at most
    # the two 64 KiB grains the non-zero bytes touch; the holes are never even read.
    assert 5005 <= result["data_bytes"] <= 2 * 65536
    evs_json(state, "snapshot", "create", "v", "--name", "s")
    out = tmp_path / "out.raw"
    evs_json(state, "snapshot", "export", "s", out)
    assert os.path.getsize(out) == 1024 * MiB
    with open(out, "rb") as f:
        assert f.read(4 * MiB) == image.read_bytes() + bytes(MiB)
    assert os.stat(out).st_blocks * 512 <= 3 * MiB  # zero blocks were not written
    usage = evs_json(state, "volume", "show", "v")["mapped_bytes"]
    assert usage <= 3 * 65536


def test_import_larger_than_volume_fails_and_changes_nothing(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    image = tmp_path / "big.raw"
    with open(image, "wb") as f:
        f.truncate(1024 * MiB + 1)
    line = one_line_error(evs(state, "volume", "import", "v", image))
    assert "extend the volume" in line
    assert evs_json(state, "volume", "show", "v")["mapped_bytes"] == 0


def test_walkthrough(tmp_path):
    result = evs(tmp_path / "unused", "demo")
    assert result.returncode == 0, result.stderr
    assert "every block read back as expected" in result.stdout
    assert "WRONG" not in result.stdout
    assert "pool check: clean" in result.stdout


def test_config_file_selects_backend_and_debug_logs(tmp_path):
    conf = tmp_path / "evs.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_path = {tmp_path}/s\nenabled_backends = fast\n"
        "[fast]\nvolume_backend_name = gold\nlocal_pool_capacity_gb = 2\n"
    )
    log = tmp_path / "evs.log"
    env = env_for(tmp_path / "ignored")
    result = evs(
        None,
        "--config-file",
        conf,
        "--debug",
        "--log-file",
        log,
        "pool",
        "show",
        "-f",
        "json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    assert row["volume_backend_name"] == "gold" and row["total_capacity_gb"] == 2.0
    assert row["location"] == f"{tmp_path}/s/pools/fast"
    assert "DEBUG" in log.read_text()


def test_import_draws_a_progress_bar_on_a_terminal(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    image = tmp_path / "img.raw"
    image.write_bytes(os.urandom(2 * MiB))
    proc, drawn = evs_on_terminal(state, "volume", "import", "v", image)
    assert proc.returncode == 0
    assert b"importing [" in drawn and b"100%" in drawn
    plain = evs(state, "volume", "import", "v", image)  # not a terminal: no bar
    assert plain.returncode == 0 and plain.stderr == ""


def test_progress_asks_for_the_bar_on_stderr_and_keeps_json_clean(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    image = tmp_path / "img.raw"
    image.write_bytes(os.urandom(2 * MiB))
    evs_json(state, "volume", "import", "v", image)
    made = evs(
        state,
        "volume",
        "create",
        "--source-volume",
        "v",
        "--full-clone",
        "--progress",
        "-f",
        "json",
    )
    assert made.returncode == 0, made.stderr
    assert "copying [" in made.stderr and "100%" in made.stderr
    assert json.loads(made.stdout)["full_clone"] is True
