"""What an operator expects of ``evs``, embedded and through ``evs-volume`` alike: serving
and unserving that repeat safely, errors that name the fix, the same output both ways, and
an ``evs`` that starts while the service starts (real processes throughout)."""

import json
import subprocess
import time

from tests.functional.cli.support import TIMEOUT, env_for, evs, evs_cmd, one_line_error
from tests.functional.nbd.nbd_wire import WireClient
from tests.functional.service.support import Service, ok


def test_serving_twice_gives_the_same_export_and_unserving_twice_succeeds(state, service):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    first = ok(state, "volume", "serve", "v")
    assert ok(state, "volume", "serve", "v") == first
    line = one_line_error(evs(state, "volume", "serve", "v", "--read-only"))
    assert "in-use (attached)" in line and "evs volume unserve" in line, line
    assert ok(state, "volume", "unserve", "v")["status"] == "available"
    assert ok(state, "volume", "unserve", "v")["status"] == "available"
    ok(state, "snapshot", "create", "v", "--name", "s")
    served = ok(state, "snapshot", "serve", "s")
    assert ok(state, "snapshot", "serve", "s")["uri"] == served["uri"]
    ok(state, "snapshot", "unserve", "s")
    assert ok(state, "snapshot", "unserve", "s")["served"] is False


def test_unserve_with_connected_clients_needs_force_and_counts_them(state, service):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    served = ok(state, "volume", "serve", "v")
    clients = [WireClient(served["socket"]) for _ in range(2)]
    for client in clients:
        client.go(served["export_name"])
    line = one_line_error(evs(state, "volume", "unserve", "v"))
    assert "2 connected client(s)" in line and "--force" in line, line
    assert ok(state, "volume", "show", "v")["status"] == "in-use"
    assert ok(state, "volume", "unserve", "v", "--force")["status"] == "available"
    assert all(client.is_closed() for client in clients)


def test_in_use_errors_name_the_action_and_the_fix(state, service):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    ok(state, "snapshot", "create", "v", "--name", "s")
    ok(state, "volume", "serve", "v")
    for command, action in (
        (("volume", "revert", "v", "--snapshot", "s"), "reverting"),
        (("volume", "extend", "v", "--size", "2"), "extending"),
        (("volume", "delete", "v", "--cascade"), "deleting"),
    ):
        line = one_line_error(evs(state, *command))
        assert "is in-use (attached)" in line and action in line, line
        assert "run `evs volume unserve" in line, line


def _outputs(state) -> dict:
    """Every read-only command's JSON, keys in the order printed."""
    return {
        command: json.loads(evs(state, *command, "-f", "json").stdout)
        for command in (
            ("volume", "list"),
            ("volume", "show", "v"),
            ("snapshot", "list"),
            ("snapshot", "show", "s"),
        )
    }


def test_the_same_fields_in_the_same_order_embedded_and_through_the_service(state, tmp_path):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    ok(state, "snapshot", "create", "v", "--name", "s")
    embedded = _outputs(state)
    service = Service(state, str(tmp_path / "service.log")).start()
    try:
        served = _outputs(state)
    finally:
        service.stop()
    for command, value in embedded.items():
        rows = value if isinstance(value, list) else [value]
        other = served[command] if isinstance(served[command], list) else [served[command]]
        assert [list(r) for r in rows] == [list(r) for r in other], command
        assert rows == other, command


def test_tables_show_sizes_for_people_and_json_keeps_bytes(state):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    ok(state, "snapshot", "create", "v", "--name", "s")
    pool = ok(state, "pool", "show")[0]
    for field in ("total_bytes", "used_bytes", "allocated_bytes", "provisioned_bytes"):
        assert isinstance(pool[field], int), field
    assert pool["provisioned_bytes"] == 1024**3
    table = evs(state, "pool", "show").stdout
    assert "1.0 GiB" in table and "provisioned_bytes" in table and "allocated_bytes" in table
    assert "0 B" in evs(state, "snapshot", "show", "s").stdout  # exclusive_bytes


def test_export_onto_an_existing_file_needs_force(state, tmp_path):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    target = tmp_path / "v.raw"
    target.write_bytes(b"keep me")
    line = one_line_error(evs(state, "volume", "export", "v", str(target)))
    assert "exists" in line and "--force" in line, line
    assert target.read_bytes() == b"keep me"
    assert evs(state, "volume", "export", "v", str(target), "--force").returncode == 0
    assert target.stat().st_size == 1024**3


def test_evs_alone_prints_help(state):
    result = subprocess.run(
        evs_cmd(), env=env_for(state), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0 and "usage: evs" in result.stdout, result.stderr


def test_a_command_running_embedded_while_the_service_starts_finishes(state, tmp_path):
    """The service waits for the embedded command; commands started meanwhile wait for the
    service. Before: the embedded command lost its pool to the service, waited lock_timeout
    (300 s) and failed "busy", leaving an error volume."""
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    release = tmp_path / "release"
    env = env_for(state, EVS_FAULT_INJECT=f"create_snapshot.after_backend=wait:{release}")
    embedded = subprocess.Popen(
        evs_cmd("snapshot", "create", "v", "--name", "s", "-f", "json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    service = Service(state, str(tmp_path / "service.log"))
    later = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / "release.reached").exists():
            assert embedded.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with open(service.log, "a") as log:
            service.proc = subprocess.Popen(
                [*evs_cmd()[:2], "evs_driver.cmd.volume_service", "--debug"],
                env=env_for(state),
                stdout=log,
                stderr=log,
            )
        while "Waiting for running evs commands" not in service.log_text():
            assert service.proc.poll() is None and time.monotonic() < deadline, service.log_text()
            time.sleep(0.05)
        later = subprocess.Popen(
            evs_cmd("volume", "list", "-f", "json"),
            env=env_for(state),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "Waiting for evs-volume to start" in later.stderr.readline()
    finally:
        release.touch()
        out, err = embedded.communicate(timeout=TIMEOUT)
    try:
        assert embedded.returncode == 0, err
        assert json.loads(out)["status"] == "available"
        listed, _ = later.communicate(timeout=TIMEOUT)
        assert later.returncode == 0 and [v["name"] for v in json.loads(listed)] == ["v"]
        assert ok(state, "snapshot", "show", "s")["status"] == "available"
        assert ok(state, "export", "list") == []  # through the service: it answers
    finally:
        service.stop()
