"""Diff streams on pipes: ``evs snapshot export S - --from S1 | evs volume import-diff V -``
between two real ``evs`` processes on two state directories (two "hosts"), as over ssh."""

import json
import os
import pty
import shutil
import subprocess
import tempfile

import pytest

from tests.functional.cli.support import (
    TIMEOUT,
    env_for,
    evs,
    evs_cmd,
    evs_json,
    exported,
    one_line_error,
    sparse_image,
    volume_with_two_snapshots,
)

MiB = 1024**2
GiB = 1024 * MiB


def _pipe(source, export_args, target, import_args):
    """``evs export ... - | evs import-diff ... -``: the two results (code, stdout, stderr)."""
    exporter = subprocess.Popen(
        evs_cmd(*export_args, "-f", "json"),
        env=env_for(source),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    importer = subprocess.Popen(
        evs_cmd(*import_args, "-f", "json"),
        env=env_for(target),
        stdin=exporter.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    exporter.stdout.close()  # the importer holds the pipe now
    imported = importer.communicate(timeout=TIMEOUT)
    exported = exporter.communicate(timeout=TIMEOUT)
    return (
        (exporter.returncode, exported[0].decode(), exported[1].decode()),
        (importer.returncode, imported[0].decode(), imported[1].decode()),
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Host A with volume ``v`` and snapshots s1, s2 (the tests only read it)."""
    tmp = tmp_path_factory.mktemp("source")
    a = tmp / "a"
    first = {MiB: b"1" * 70000, 600 * MiB: b"x" * 4096}
    s1, s2 = volume_with_two_snapshots(a, tmp, first, {MiB: b"1" * 70000, 900 * MiB: b"2" * 5000})
    return a, s1, s2


@pytest.fixture
def hosts(tmp_path, source):
    """Host A (``source``) and a host B of its own with an empty volume ``copy``."""
    a, s1, s2 = source
    b = tmp_path / "b"
    evs_json(b, "volume", "create", "--size", "1", "--name", "copy")
    return a, b, s1, s2


def test_full_then_incremental_streams_over_pipes_rebuild_s2_on_the_other_host(tmp_path, hosts):
    a, b, s1, s2 = hosts
    (code, out, err), (icode, iout, ierr) = _pipe(
        a,
        ("snapshot", "export", s1, "-", "--diff-stream"),
        b,
        ("volume", "import-diff", "copy", "-"),
    )
    assert (code, icode) == (0, 0), (err, ierr)
    assert out == ""  # nothing but the stream on stdout; the summary went to stderr
    assert json.loads(err)["to"]["id"] == s1
    first = json.loads(iout)["snapshot"]
    (code, out, err), (icode, iout, ierr) = _pipe(
        a, ("snapshot", "export", s2, "-", "--from", s1), b, ("volume", "import-diff", "copy", "-")
    )
    assert (code, icode, out) == (0, 0, ""), (err, ierr)
    summary = json.loads(err)
    assert summary["from"]["id"] == s1 and summary["data_bytes"] < 200 * 1024
    assert exported(b, "volume", "copy", tmp_path / "copy.raw") == exported(
        a, "snapshot", s2, tmp_path / "s2.raw"
    )
    assert exported(b, "snapshot", first, tmp_path / "c1.raw") == exported(
        a, "snapshot", s1, tmp_path / "s1.raw"
    )


def test_a_cut_stream_on_stdin_is_refused_and_the_volume_put_back(tmp_path, hosts):
    a, b, s1, _ = hosts
    stream = tmp_path / "s1.evsdiff"
    evs_json(a, "snapshot", "export", s1, stream, "--diff-stream")
    data = stream.read_bytes()
    before = exported(b, "volume", "copy", tmp_path / "before.raw")
    # Empty, cut in the header, in the middle of the data (applied up to there), at the end.
    for keep in (0, 20, len(data) // 2, len(data) - 40):
        result = subprocess.run(
            evs_cmd("volume", "import-diff", "copy", "-"),
            env=env_for(b),
            input=data[:keep],
            capture_output=True,
            timeout=TIMEOUT,
        )
        line = one_line_error(
            subprocess.CompletedProcess([], result.returncode, "", result.stderr.decode())
        )
        assert "standard input is not a usable evs diff stream" in line, line
        assert "/proc/" not in line
    assert exported(b, "volume", "copy", tmp_path / "after.raw") == before
    assert evs_json(b, "snapshot", "list", "--volume", "copy") == []


def test_a_reader_that_goes_away_is_reported(hosts):
    a, _, s1, _ = hosts
    exporter = subprocess.Popen(
        evs_cmd("snapshot", "export", s1, "-", "--diff-stream"),
        env=env_for(a),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    exporter.stdout.read(10)
    exporter.stdout.close()
    _, err = exporter.communicate(timeout=TIMEOUT)
    line = one_line_error(subprocess.CompletedProcess([], exporter.returncode, "", err.decode()))
    assert "went away" in line and "standard output" in line


def test_dash_is_refused_where_it_cannot_be_a_stream(tmp_path, hosts):
    a, _, s1, _ = hosts
    with open(tmp_path / "out", "w") as regular:  # `> file`: name the file instead
        result = subprocess.run(
            evs_cmd("snapshot", "export", s1, "-", "--diff-stream"),
            env=env_for(a),
            stdout=regular,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
        )
    assert "not a pipe" in one_line_error(result)
    assert (tmp_path / "out").read_bytes() == b""
    line = one_line_error(evs(a, "snapshot", "export", s1, "-"))
    assert "only a diff stream" in line
    line = one_line_error(evs(a, "volume", "export", "v", "-"))
    assert "only a diff stream" in line
    main, terminal = pty.openpty()  # import-diff V - typed at a prompt, nothing piped in
    try:
        result = subprocess.run(
            evs_cmd("volume", "import-diff", "v", "-"),
            env=env_for(a),
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        os.close(terminal)
        os.close(main)
    assert "standard input is a terminal" in one_line_error(result)


def test_through_a_service_on_each_host(tmp_path):
    """With ``evs-volume`` running, each service opens the ``evs`` process's pipe."""
    from tests.functional.service.support import Service

    states, services = [], []
    try:
        for _ in range(2):
            state = tempfile.mkdtemp(prefix="evsd-", dir="/tmp")  # socket paths < 108 bytes
            states.append(state)
            services.append(Service(state, f"{state}/service.log").start())
        a, b = states
        sparse_image(tmp_path / "one.raw", GiB, {3 * MiB: b"1" * 70000})
        evs_json(a, "volume", "create", "--size", "1", "--name", "v")
        evs_json(a, "volume", "import", "v", tmp_path / "one.raw")
        s1 = evs_json(a, "snapshot", "create", "v")["id"]
        evs_json(b, "volume", "create", "--size", "1", "--name", "copy")
        (code, out, err), (icode, _, ierr) = _pipe(
            a,
            ("snapshot", "export", s1, "-", "--diff-stream"),
            b,
            ("volume", "import-diff", "copy", "-"),
        )
        assert (code, icode, out) == (0, 0, ""), (err, ierr)
        assert exported(b, "volume", "copy", tmp_path / "c.raw") == exported(
            a, "snapshot", s1, tmp_path / "s1.raw"
        )
        assert "Applied diff" in services[1].log_text()
    finally:
        for service in services:
            service.stop()
        for state in states:
            shutil.rmtree(state, ignore_errors=True)
            shutil.rmtree(state + ".home", ignore_errors=True)
