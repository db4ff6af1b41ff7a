"""Backends that are missing, disabled or busy, as an operator meets them with ``evs``.

Real ``evs`` processes, real pools on real files: a pool on a file system that is not
mounted is never replaced by a new empty one, a backend taken out of ``enabled_backends``
leaves its volumes listed and untouchable, and a busy backend says who holds it.
"""

import os
import subprocess
import time

import pytest

from tests.functional.cli.support import (
    TIMEOUT,
    env_for,
    evs,
    evs_cmd,
    evs_json,
    one_line_error,
)


def _conf(tmp_path, text: str) -> str:
    path = tmp_path / "evs.conf"
    path.write_text(text)
    return str(path)


@pytest.fixture
def mounted(tmp_path):
    """A state path whose pool lives on a "mount point" that the test can unmount."""
    state = tmp_path / "state"
    mount = tmp_path / "mnt"
    mount.mkdir()
    conf = _conf(
        tmp_path,
        f"[DEFAULT]\nenabled_backends = fast\n[fast]\nlocal_pool_path = {mount}/pool\n",
    )
    return state, mount, conf


def _unmount(mount) -> None:
    """What a mount that did not come back looks like: an empty directory."""
    os.rename(mount, f"{mount}.away")
    os.mkdir(mount)


def _remount(mount) -> None:
    os.rmdir(mount)
    os.rename(f"{mount}.away", mount)


def test_a_missing_pool_is_never_replaced_by_a_new_one(mounted):
    state, mount, conf = mounted
    evs_json(state, "--config-file", conf, "volume", "create", "--size", "1", "--name", "v")
    _unmount(mount)
    listed = evs_json(state, "--config-file", conf, "volume", "list")
    assert [v["name"] for v in listed] == ["v"]  # the catalog still answers
    line = one_line_error(evs(state, "--config-file", conf, "volume", "create", "--size", "1"))
    assert "missing or empty" in line and f"{mount}/pool" in line, line
    assert os.listdir(mount) == []  # no new pool on the root disk
    line = one_line_error(evs(state, "--config-file", conf, "snapshot", "create", "v"))
    assert "missing or empty" in line, line
    shown = evs_json(state, "--config-file", conf, "volume", "show", "v")
    assert shown["backend_status"].startswith("down: ") and shown["mapped_bytes"] is None
    shown = evs_json(state, "--config-file", conf, "pool", "show")
    assert shown[0]["state"] == "down" and f"{mount}/pool" in shown[0]["reason"]
    check = evs(state, "--config-file", conf, "pool", "check")
    assert check.returncode == 1 and "missing or empty" in check.stdout
    assert evs_json(state, "--config-file", conf, "snapshot", "list") == []  # no error rows
    _remount(mount)
    assert evs_json(state, "--config-file", conf, "volume", "show", "v")["status"] == "available"
    assert evs_json(state, "--config-file", conf, "pool", "show")[0]["state"] == "up"


def test_pool_create_starts_over_only_when_told(mounted):
    state, mount, conf = mounted
    evs_json(state, "--config-file", conf, "volume", "create", "--size", "1", "--name", "v")
    _unmount(mount)
    line = one_line_error(evs(state, "--config-file", conf, "pool", "create"))
    assert "--force" in line and "1 volume(s)" in line, line
    assert os.listdir(mount) == []
    created = evs_json(state, "--config-file", conf, "pool", "create", "--force")
    assert created["state"] == "up" and created["volumes"] == 0
    evs_json(state, "--config-file", conf, "volume", "create", "--size", "1", "--name", "w")
    check = evs(state, "--config-file", conf, "pool", "check")
    assert check.returncode == 1 and "has no backend device" in check.stdout  # v lost its data
    line = one_line_error(evs(state, "--config-file", conf, "pool", "create"))
    assert "already exists" in line, line


def test_the_first_pool_is_created_at_first_use(tmp_path):
    state = tmp_path / "state"
    assert evs_json(state, "volume", "list") == []
    assert not os.path.exists(state / "pools" / "local")  # a listing opens no pool
    evs_json(state, "volume", "create", "--size", "1")
    assert os.path.isdir(state / "pools" / "local")


def test_a_backend_taken_out_of_enabled_backends_changes_nothing(tmp_path):
    state = tmp_path / "state"
    both = _conf(tmp_path, "[DEFAULT]\nenabled_backends = a,b\n")
    evs_json(state, "--config-file", both, "volume", "create", "--size", "1", "--name", "va",
             "--backend", "a")  # fmt: skip
    only_b = str(tmp_path / "b.conf")
    with open(only_b, "w") as f:
        f.write("[DEFAULT]\nenabled_backends = b\n")
    listed = evs_json(state, "--config-file", only_b, "volume", "list")
    assert [(v["name"], v["backend_status"]) for v in listed] == [("va", "not enabled")]
    table = evs(state, "--config-file", only_b, "volume", "list")
    assert "not enabled" in table.stdout
    for command in (
        ("snapshot", "create", "va"),
        ("volume", "extend", "va", "--size", "2"),
        ("volume", "delete", "va"),
        ("volume", "create", "--source-volume", "va"),
    ):
        line = one_line_error(evs(state, "--config-file", only_b, *command))
        assert "not in enabled_backends" in line, (command, line)
    assert evs_json(state, "--config-file", only_b, "snapshot", "list") == []
    [volume] = evs_json(state, "--config-file", only_b, "volume", "list")
    assert (volume["status"], volume["size"]) == ("available", 1)
    # Back in the configuration, everything works again.
    assert evs(state, "--config-file", both, "snapshot", "create", "va").returncode == 0


def _held(state, tmp_path, *command):
    """Start ``evs`` held at a fault point inside its backend work; returns (proc, release)."""
    release = tmp_path / "release"
    env = env_for(state, EVS_FAULT_INJECT=f"extend_volume.after_backend=wait:{release}")
    proc = subprocess.Popen(
        evs_cmd(*command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    reached = tmp_path / "release.reached"
    deadline = time.monotonic() + TIMEOUT
    while not reached.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    return proc, release


def test_a_busy_backend_says_who_holds_it_and_listings_do_not_wait(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    holder, release = _held(state, tmp_path, "volume", "extend", "v", "--size", "2")
    waiter = None
    try:
        # Listings answer from the catalog while the backend is held (the holder cannot
        # finish before the release, so these returned without waiting for it).
        assert [v["status"] for v in evs_json(state, "volume", "list")] == ["extending"]
        assert evs_json(state, "snapshot", "list") == []
        waiter = subprocess.Popen(
            evs_cmd("volume", "create", "--size", "1", "--name", "w"),
            env=env_for(state),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = waiter.stderr.readline()  # bounded by the holder: it waits for the release
        assert "Waiting for backend local (held by pid" in line and str(holder.pid) in line, line
        assert holder.poll() is None and waiter.poll() is None
    finally:
        release.touch()
        assert holder.wait(timeout=TIMEOUT) == 0
    out, err = waiter.communicate(timeout=TIMEOUT)
    assert waiter.returncode == 0, err
    assert {v["name"]: v["status"] for v in evs_json(state, "volume", "list")} == {
        "v": "available",
        "w": "available",
    }
