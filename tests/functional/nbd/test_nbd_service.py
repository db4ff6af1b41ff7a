"""The real ``evs-volume``'s NBD side: bounded under hostile clients, TLS beyond loopback.

The attack of issue 10: many clients each ask for one 32 MiB read and never read the
reply. Before the caps each connection held the whole 32 MiB; now a connection holds at
most ``max_bytes_in_flight`` plus its receive buffer, and the service keeps serving.
"""

import json
import os
import select
import subprocess

import pytest

from evs_driver.nbd.limits import RECEIVE_BUFFER
from tests.functional.cli.support import TIMEOUT, env_for, evs
from tests.functional.nbd.nbd_clients import qemu_io, requires, run
from tests.functional.nbd.nbd_wire import CMD_READ, Closed, WireClient, wait_for
from tests.functional.nbd.tls_certs import make_pki
from tests.functional.service.support import MiB, Service, ok, service_cmd

HOSTILE_CLIENTS = 47
IN_FLIGHT = 2 * MiB  # the default of [nbd] max_bytes_in_flight


def rss(pid: int) -> int:
    """Resident memory of a process in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def start(state, nbd_options: str = "") -> Service:
    """``evs-volume`` on ``state`` with these ``[nbd]`` options in its config file."""
    config = os.path.join(state + ".home", ".evs_driver")
    os.makedirs(config, exist_ok=True)
    with open(os.path.join(config, "evs_driver.conf"), "w") as f:
        f.write(f"[nbd]\n{nbd_options}\n")
    return Service(state, f"{state}/service.log").start()


def serve_volume(state, name="v") -> dict:
    ok(state, "volume", "create", "--size", "1", "--name", name)
    return ok(state, "volume", "serve", name)


@requires("qemu-io")
def test_hostile_readers_leave_the_service_memory_bounded(state):
    # Let all of them in (16 a volume by default): what is measured is bytes in flight.
    service = start(state, f"max_connections_per_export = {HOSTILE_CLIENTS + 1}")
    try:
        info = serve_volume(state)
        qemu_io(info["uri"], "write -P 0x5c 0 1M")  # also warms the read path up
        before = rss(service.proc.pid)
        clients = []
        for _ in range(HOSTILE_CLIENTS):
            client = WireClient(info["socket"])
            client.go(info["export_name"])
            client.request(CMD_READ, 0, 32 * MiB)  # and never read the reply
            clients.append(client)
        # Once a client can read, the server filled its buffer and blocks on the client.
        for client in clients:
            assert select.select([client.sock], [], [], 60)[0], "no reply started"
        grown = rss(service.proc.pid) - before
        print(f"RSS {before / MiB:.0f} MiB, +{grown / MiB:.0f} MiB for {HOSTILE_CLIENTS} clients")
        bound = HOSTILE_CLIENTS * (IN_FLIGHT + RECEIVE_BUFFER + MiB)  # + thread and slack
        assert grown < bound, f"RSS grew {grown / MiB:.0f} MiB, bound {bound / MiB:.0f} MiB"
        qemu_io(info["uri"], "read -P 0x5c 0 1M")  # others are still served meanwhile
        for client in clients:
            client.close()
        wait_for(lambda: ok(state, "export", "list")[0]["connections"] == 0, "clients to go")
    finally:
        assert service.stop() == 0, service.log_text()


@requires("nbdinfo", "qemu-img")
def test_service_caps_connections_and_drops_silent_handshakes(state):
    service = start(state, "max_connections = 3\nhandshake_timeout = 0.5\n")
    try:
        info = serve_volume(state)
        held = []
        for _ in range(3):
            client = WireClient(info["socket"])
            client.go(info["export_name"])
            held.append(client)
        result = run("qemu-img", "info", info["uri"], ok=False)
        assert "server reported: the NBD server has its maximum of 3 connections" in result.stderr
        held.pop().close()
        wait_for(lambda: ok(state, "export", "list")[0]["connections"] == 2, "a free slot")
        assert "export-size" in run("nbdinfo", "--json", info["uri"]).stdout
        silent = WireClient(info["socket"])
        silent.recv_exact(18)
        with pytest.raises(Closed):
            silent.recv_exact(1)  # it sent nothing: dropped after handshake_timeout
        for client in held:
            client.close()
    finally:
        assert service.stop() == 0, service.log_text()


def test_bad_nbd_option_fails_the_start_naming_it(state):
    config = os.path.join(state + ".home", ".evs_driver")
    os.makedirs(config)
    with open(os.path.join(config, "evs_driver.conf"), "w") as f:
        f.write("[nbd]\nmax_bytes_in_flight = 100\n")
    result = subprocess.run(
        service_cmd(), env=env_for(state), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 1
    assert "[nbd] max_bytes_in_flight" in result.stderr and "65536" in result.stderr


def test_plain_tcp_beyond_loopback_is_refused_with_the_fix(state):
    service = start(state)
    try:
        ok(state, "volume", "create", "--size", "1", "--name", "v")
        result = evs(state, "volume", "serve", "v", "--bind", "0.0.0.0", "--port", "0")
        assert result.returncode == 1
        assert "[nbd] tls_x509_dir" in result.stderr and "allow_insecure_tcp" in result.stderr
        assert ok(state, "volume", "show", "v")["status"] == "available"  # nothing half done
        assert ok(state, "export", "list") == []
    finally:
        assert service.stop() == 0, service.log_text()


@requires("openssl", "qemu-io", "nbdinfo")
def test_tls_export_beyond_loopback_with_real_clients(state):
    pki = make_pki(state)
    service = start(state, f"tls_x509_dir = {pki.server}\n")
    try:
        ok(state, "volume", "create", "--size", "1", "--name", "v")
        info = ok(state, "volume", "serve", "v", "--bind", "0.0.0.0", "--port", "0")
        assert info["uri"].startswith("nbds://0.0.0.0:") and info["tls"] is True
        obj = f"tls-creds-x509,id=tls0,endpoint=client,dir={pki.client}"
        opts = (
            f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={info['port']},"
            f"export={info['export_name']},tls-creds=tls0"
        )
        run("qemu-io", "--object", obj, "--image-opts", "-c", "write -P 0x7e 0 1M", opts)
        uri = f"nbds://127.0.0.1:{info['port']}/{info['export_name']}"
        assert "with TLS" in run("nbdinfo", f"{uri}?tls-certificates={pki.client}").stdout
        plain = run("nbdinfo", f"nbd://127.0.0.1:{info['port']}/{info['export_name']}", ok=False)
        assert plain.returncode != 0
        result = run("qemu-io", "--object", obj, "--image-opts", "-c", "read -P 0x7e 0 1M", opts)
        assert "read 1048576/1048576" in result.stdout
    finally:
        assert service.stop() == 0, service.log_text()


@requires("qemu-io")
def test_volume_and_snapshot_are_reachable_by_name(state):
    service = start(state)
    try:
        ok(state, "volume", "create", "--size", "1", "--name", "v1")
        socket_path = f"{state}/v1.sock"
        info = ok(state, "volume", "serve", "v1", "--socket", socket_path)
        assert info["name"] == "v1"
        qemu_io(f"nbd+unix:///v1?socket={socket_path}", "write -P 0x1d 0 64k")
        ok(state, "snapshot", "create", "v1", "--name", "s1")
        snap = ok(state, "snapshot", "serve", "s1")
        qemu_io(f"nbd+unix:///s1?socket={snap['socket']}", "read -P 0x1d 0 64k", read_only=True)
        names = {e["export_name"]: e["name"] for e in ok(state, "export", "list")}
        assert names == {info["export_name"]: "v1", snap["export_name"]: "s1"}
        header, *rows = [
            line for line in evs(state, "export", "list").stdout.splitlines() if "|" in line
        ]
        columns = [cell.strip() for cell in header.split("|")]
        assert "export_name" in columns and "name" in columns  # the table shows both
        names_shown = [row.split("|")[columns.index("name")].strip() for row in rows]
        assert sorted(names_shown) == ["s1", "v1"]
        ok(state, "volume", "create", "--size", "1", "--name", "s1")  # now s1 names two
        ok(state, "snapshot", "unserve", "s1")
        result = evs(state, "snapshot", "serve", "s1")
        assert result.returncode == 1 and "s1 cannot be an NBD export name" in result.stderr
    finally:
        assert service.stop() == 0, service.log_text()


@requires("qemu-io", "qemu-img", "nbdinfo")
def test_a_served_local_volume_reports_its_holes(state):
    service = start(state)
    try:
        info = serve_volume(state)
        qemu_io(info["uri"], "write -P 0x44 5M 1M")
        entries = json.loads(run("qemu-img", "map", "--output=json", info["uri"]).stdout)
        assert [(e["start"], e["length"]) for e in entries if e["data"]] == [(5 * MiB, MiB)]
        assert sum(e["length"] for e in entries) == 1024 * MiB
        assert "hole,zero" in run("nbdinfo", "--map", info["uri"]).stdout
    finally:
        assert service.stop() == 0, service.log_text()


def _changed_runs(uri: str, context: str) -> list[tuple[int, int]]:
    """(offset, length) of the runs ``nbdinfo --map`` reports changed (flag 1)."""
    lines = run("nbdinfo", f"--map={context}", uri).stdout.splitlines()
    fields = [[int(f) for f in line.split()[:3]] for line in lines if line.strip()]
    return [(start, length) for start, length, flags in fields if flags & 1]


def _joined(extents: list[dict]) -> list[tuple[int, int]]:
    """``evs snapshot diff`` extents as (offset, length), adjacent ones joined."""
    runs: list[tuple[int, int]] = []
    for e in extents:
        if runs and sum(runs[-1]) == e["offset"]:
            runs[-1] = (runs[-1][0], runs[-1][1] + e["length"])
        else:
            runs.append((e["offset"], e["length"]))
    return runs


@requires("qemu-io", "qemu-img", "nbdinfo")
def test_a_delta_fetched_over_nbd_brings_a_copy_of_the_snapshot_up_to_date(state):
    service = start(state)
    try:
        info = serve_volume(state)
        uri, sock, name = info["uri"], info["socket"], info["export_name"]
        qemu_io(uri, "write -P 0x11 0 1M", "write -P 0x22 100M 2M", "write -P 0x33 700M 64k")
        base = ok(state, "snapshot", "create", "v", "--name", "base")["id"]
        qemu_io(uri, "write -P 0x44 101M 4k", "write -P 0x55 900M 1M", "discard 0 1M")
        qemu_io(uri, "write -z 700M 64k", "flush")
        delta = _changed_runs(uri, "evs:changed-since:base")
        assert _changed_runs(uri, f"evs:changed-since:{base}") == delta
        source = f"driver=nbd,server.type=unix,server.path={sock},export={name}"
        bitmap = f"{source},x-dirty-bitmap=evs:changed-since:base"
        entries = json.loads(run("qemu-img", "map", "--output=json", "--image-opts", bitmap).stdout)
        assert [(e["start"], e["length"]) for e in entries if not e["data"]] == delta
        now = ok(state, "snapshot", "create", "v", "--name", "now")["id"]
        diff = ok(state, "snapshot", "diff", "now", "--from", "base")
        assert diff["snapshot"] == now and diff["from"] == base
        assert _joined(diff["extents"]) == delta and len(delta) == 4
        # The snapshot export answers against the older snapshot alike; LIST names both.
        snap = ok(state, "snapshot", "serve", "now")
        assert _changed_runs(snap["uri"], "evs:changed-since:base") == delta
        listing = run("nbdinfo", "--list", uri).stdout
        assert "evs:changed-since:base" in listing and "evs:changed-since:now" in listing
        assert run("nbdinfo", "--map=evs:changed-since:nope", uri, ok=False).returncode != 0
        # A copy of the base, then only the delta read over NBD: the volume, byte for byte.
        copy, whole = f"{state}/copy.raw", f"{state}/whole.raw"
        ok(state, "snapshot", "export", base, copy)
        run("qemu-img", "convert", "-O", "raw", uri, whole)
        compare = ("qemu-img", "compare", "-f", "raw", "-F", "raw", copy, whole)
        assert run(*compare, ok=False).returncode == 1  # 1: they differ
        for offset, length in delta:
            piece = f"driver=raw,offset={offset},size={length}"
            run(
                "qemu-img", "convert", "-n",
                "--image-opts", f"{piece},file.{source.replace(',', ',file.')}",
                "--target-image-opts", f"{piece},file.driver=file,file.filename={copy}",
            )  # fmt: skip
        run(*compare)
        assert diff["changed_bytes"] == sum(length for _offset, length in delta) < 3 * MiB
    finally:
        assert service.stop() == 0, service.log_text()
