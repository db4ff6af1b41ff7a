"""Consistency groups through the real ``evs``: one instant for every member, revert of
the whole group, a new group from a group snapshot, and refusals that change nothing."""

import signal

import pytest

from tests.functional.cli.support import env_for, evs, evs_json, one_line_error

MiB = 1024**2
GiB = 1024 * MiB


def _image(path, byte: bytes):
    with open(path, "wb") as image:
        image.truncate(GiB)
        image.seek(7 * MiB)
        image.write(byte * 65536)


def _read(state, kind, ref, path) -> bytes:
    evs_json(state, kind, "export", ref, path, "--force")
    with open(path, "rb") as image:
        image.seek(7 * MiB)
        return image.read(65536)


def test_group_snapshot_revert_clone_and_delete(tmp_path):
    state = tmp_path / "state"
    for name, byte in (("a", b"A"), ("b", b"B")):
        evs_json(state, "volume", "create", "--size", "1", "--name", name)
        _image(tmp_path / f"{name}.raw", byte)
        evs_json(state, "volume", "import", name, tmp_path / f"{name}.raw")
    group = evs_json(state, "group", "create", "--volume", "a", "--volume", "b", "--name", "g")
    assert group["status"] == "available" and len(group["volumes"]) == 2
    taken = evs_json(state, "group", "snapshot", "g", "--name", "first")
    assert taken["status"] == "available" and len(taken["snapshots"]) == 2
    members = evs_json(state, "snapshot", "list")
    assert sorted(s["name"] for s in members) == ["first", "first"]

    for name in ("a", "b"):  # both change after the group snapshot
        _image(tmp_path / f"{name}2.raw", b"Z")
        evs_json(state, "volume", "import", name, tmp_path / f"{name}2.raw")
    assert _read(state, "volume", "a", tmp_path / "x.raw") == b"Z" * 65536

    evs_json(state, "group", "revert", "g", taken["id"])
    assert _read(state, "volume", "a", tmp_path / "x.raw") == b"A" * 65536
    assert _read(state, "volume", "b", tmp_path / "x.raw") == b"B" * 65536

    copy = evs_json(state, "group", "create", "--from-group-snapshot", taken["id"], "--name", "c")
    assert copy["status"] == "available" and len(copy["volumes"]) == 2
    contents = sorted(_read(state, "volume", v, tmp_path / "x.raw")[:1] for v in copy["volumes"])
    assert contents == [b"A", b"B"]

    # A volume is in one group at most; a group with group snapshots is not deleted.
    line = one_line_error(evs(state, "group", "create", "--volume", "a"))
    assert "already in group" in line
    line = one_line_error(evs(state, "group", "delete", "g"))
    assert "group snapshot" in line
    member = evs_json(state, "snapshot", "list")[0]["id"]  # the group's instant stays whole
    line = one_line_error(evs(state, "snapshot", "delete", member))
    assert f"part of group snapshot {taken['id']}" in line
    assert len(evs_json(state, "snapshot", "list")) == 2
    evs_json(state, "group", "update", "g", "--remove-volume", "b")
    assert len(evs_json(state, "group", "show", "g")["volumes"]) == 1

    assert evs(state, "group", "snapshot-delete", taken["id"]).returncode == 0
    assert evs_json(state, "group", "snapshot-list") == []
    assert evs_json(state, "snapshot", "list") == []
    assert evs(state, "group", "delete", "g").returncode == 0
    assert [g["name"] for g in evs_json(state, "group", "list")] == ["c"]
    assert evs_json(state, "volume", "show", "a")["status"] == "available"  # volumes stay
    assert evs(state, "pool", "check").returncode == 0


def test_a_group_snapshot_that_cannot_take_every_member_takes_none(tmp_path):
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "a")
    evs_json(state, "volume", "create", "--size", "1", "--name", "b")
    evs_json(state, "group", "create", "--volume", "a", "--volume", "b", "--name", "g")
    evs_json(state, "snapshot", "create", "b")
    conf = tmp_path / "limit.conf"
    conf.write_text("[DEFAULT]\nmax_snapshots_per_volume = 1\n")
    line = one_line_error(evs(state, "--config-file", conf, "group", "snapshot", "g"))
    assert "snapshot" in line.lower(), line  # b is at its limit: a refuses with it
    assert evs_json(state, "group", "snapshot-list") == []
    assert len(evs_json(state, "snapshot", "list")) == 1


@pytest.mark.parametrize(
    "command,point,group_status,member_status",
    [
        ("snapshot g --name n", "group_snapshot.before_backend", "error", "error"),
        ("snapshot g --name n", "group_snapshot.after_backend", "available", "available"),
        ("snapshot-delete gs", "delete_group_snapshot.after_backend", None, None),
    ],
)
def test_a_crash_in_a_group_operation_is_settled_at_the_next_start(
    tmp_path, command, point, group_status, member_status
):
    state = tmp_path / "state"
    for name in ("a", "b"):
        evs_json(state, "volume", "create", "--size", "1", "--name", name)
    evs_json(state, "group", "create", "--volume", "a", "--volume", "b", "--name", "g")
    if command.startswith("snapshot-delete"):
        evs_json(state, "group", "snapshot", "g", "--name", "gs")
        command = command.replace("gs", evs_json(state, "group", "snapshot-list")[0]["id"])
    killed = evs(
        state, "group", *command.split(" "), env=env_for(state, EVS_FAULT_INJECT=f"{point}=kill")
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    check = evs(state, "pool", "check")  # the first start after the crash recovers
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Recovered" in check.stderr
    taken = evs_json(state, "group", "snapshot-list")
    members = evs_json(state, "snapshot", "list")
    if group_status is None:
        assert taken == [] and members == []
    else:
        assert [t["status"] for t in taken] == [group_status]
        assert [m["status"] for m in members] == [member_status] * 2
