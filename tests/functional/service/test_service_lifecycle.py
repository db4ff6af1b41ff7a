"""The service's life: control socket access, nbdinfo's view, SIGTERM, kill -9, foreground serve."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from evs_driver.service import protocol
from tests.functional.cli.support import TIMEOUT, env_for, evs, evs_cmd
from tests.functional.nbd.nbd_clients import requires, run
from tests.functional.nbd.nbd_wire import CMD_FLUSH, WireClient
from tests.functional.service.support import MiB, Service, answers, ok, service_cmd

NOBODY = 65534


def _nbdinfo(uri: str) -> dict:
    return json.loads(run("nbdinfo", "--json", uri).stdout)["exports"][0]


@requires("nbdinfo")
def test_nbdinfo_sees_sizes_and_flags(service, state):
    ok(state, "volume", "create", "--size", "2", "--name", "v")
    ok(state, "snapshot", "create", "v", "--name", "s")
    volume = _nbdinfo(ok(state, "volume", "serve", "v")["uri"])
    snapshot = _nbdinfo(ok(state, "snapshot", "serve", "s")["uri"])
    assert volume["export-size"] == snapshot["export-size"] == 2 * 1024 * MiB
    assert (volume["is_read_only"], snapshot["is_read_only"]) == (False, True)
    assert volume["can_flush"] and volume["can_fua"] and volume["can_trim"]
    assert volume["can_multi_conn"] and snapshot["can_multi_conn"]
    ok(state, "volume", "unserve", "v")
    ro = _nbdinfo(ok(state, "volume", "serve", "v", "--read-only")["uri"])
    assert ro["is_read_only"] is True


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_control_socket_refuses_other_users(service, state):
    path = os.path.join(state, protocol.SOCKET_NAME)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(state, 0o755)  # let the other user reach the socket file itself
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n"
    )
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-c",
            probe,
            path,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 13, result.stderr
    assert answers(state)


def test_garbage_on_the_control_socket_does_not_hurt_the_service(service, state):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.path.join(state, protocol.SOCKET_NAME))
    reader = sock.makefile("rb")
    for line in (b"\x00\xff garbage\n", b'{"method": "volume_delete", "args": [1, 2, 3]}\n'):
        sock.sendall(line)
        reply = json.loads(reader.readline())
        assert reply["ok"] is False and reply["error"]["type"] == "InvalidInput"
    sock.sendall(b'{"method": "volume_list"')  # half a request, then hang up
    sock.close()
    assert ok(state, "volume", "list") == [] and answers(state)


def _clean_open(state) -> str:
    """The warnings of an embedded command that opens the pool (empty after a clean close)."""
    log = os.path.join(state, "embedded.log")
    result = evs(state, "pool", "check", "--debug", "--log-file", log)
    assert result.returncode == 0, result.stderr
    with open(log) as f:
        return "\n".join(line for line in f if "WARNING" in line)


def test_sigterm_closes_exports_detaches_and_closes_the_pool_cleanly(service, state):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    served = ok(state, "volume", "serve", "v")
    client = WireClient(served["socket"])
    client.go(served["export_name"])
    assert client.write(0, b"a" * 4096) == 0  # not flushed: SIGTERM must flush it
    assert service.stop(signal.SIGTERM) == 0
    assert client.is_closed()
    assert not os.path.exists(os.path.join(state, protocol.SOCKET_NAME))
    assert not os.path.exists(served["socket"])
    warnings = _clean_open(state)
    assert "not closed cleanly" not in warnings and "stopped service" not in warnings, warnings
    assert ok(state, "volume", "show", "v")["status"] == "available"  # embedded now
    out = os.path.join(state, "v.raw")
    ok(state, "volume", "export", "v", out)
    with open(out, "rb") as f:
        assert f.read(4096) == b"a" * 4096


def test_kill_9_during_writes_keeps_every_flushed_and_fua_write(state):
    service = Service(state, f"{state}/service.log").start()
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    served = ok(state, "volume", "serve", "v")
    client = WireClient(served["socket"])
    client.go(served["export_name"])
    acked = []
    block = 4096
    flushed = os.urandom(64 * block)
    assert client.write(4096 * block, flushed) == 0  # no FUA: durable once the flush returns
    client.request(CMD_FLUSH, cookie=7)
    assert client.reply() == (0, 7)
    try:
        for i in range(100_000):
            if i == 300:
                service.proc.send_signal(signal.SIGKILL)  # writes keep going until it is dead
            data = (i.to_bytes(4, "big") + b"fua!") * (block // 8)
            try:
                error = client.write((i % 2048) * block, data, flags=1)
            except Exception:  # the server died: reset, closed, or a torn reply
                break
            assert error == 0
            acked.append(i)
    finally:
        client.close()
        service.proc.wait(timeout=TIMEOUT)
    assert len(acked) >= 300
    restarted = Service(state, f"{state}/service.log").start()
    try:
        assert ok(state, "volume", "show", "v")["status"] == "available"  # was in-use
        assert "stopped service" in restarted.log_text()
        out = os.path.join(state, "v.raw")
        ok(state, "volume", "export", "v", out)
        with open(out, "rb") as f:
            data = f.read(2048 * block)
        with open(out, "rb") as f:
            f.seek(4096 * block)
            assert f.read(len(flushed)) == flushed
        latest = {i % 2048: i for i in acked}
        for slot, i in latest.items():
            got = data[slot * block : slot * block + 4]
            assert int.from_bytes(got, "big") >= i, f"acknowledged FUA write {i} lost"
        assert ok(state, "pool", "check")["clean"]
    finally:
        restarted.stop()


def test_serve_without_a_service_runs_one_in_the_foreground(state):
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    proc = subprocess.Popen(
        evs_cmd("volume", "serve", "v", "-f", "json"),
        env=env_for(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        served = json.loads(_read_json(proc))
        assert served["uri"].startswith("nbd+unix:///")
        assert ok(state, "volume", "show", "v")["status"] == "in-use"  # answered by it
        ok(state, "snapshot", "create", "v", "--name", "s")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert ok(state, "volume", "show", "v")["status"] == "available"
    assert not answers(state)


def _read_json(proc) -> str:
    """The JSON object a ``serve`` prints before it blocks."""
    lines = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"serve exited: {proc.communicate()}")
        lines.append(line)
        if line.rstrip() == "}":
            return "".join(lines)
    pytest.fail("serve printed no result")


def test_service_start_errors_are_one_line(service, state):
    again = subprocess.run(
        service_cmd(), env=env_for(state), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert again.returncode == 1 and "already runs" in again.stderr, again.stderr
    missing = subprocess.run(
        service_cmd("--config-file", "/nonexistent.conf"),
        env=env_for(state),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "evs-volume: error: Invalid configuration: config file not found: /nonexistent.conf"
    ]
    assert answers(state)
