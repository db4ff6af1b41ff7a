"""Every state change leaves an audit line: INFO with the ids, names and outcome; failures
at WARNING or ERROR with the reason (real ``evs`` processes writing a real log file)."""

import json
import re

from tests.functional.cli.support import env_for, evs, evs_json


def test_every_state_change_is_logged_with_ids_and_names(tmp_path):
    state = tmp_path / "state"
    log = tmp_path / "evs.log"

    def run(*args):
        return evs(state, "--log-file", log, *args, "-f", "json")

    volume = json.loads(run("volume", "create", "--size", "1", "--name", "vol-a").stdout)
    snap = json.loads(run("snapshot", "create", "vol-a", "--name", "snap-a").stdout)
    clone = json.loads(run("volume", "create", "--snapshot", "snap-a", "--name", "clone-a").stdout)
    full = json.loads(
        run("volume", "create", "--source-volume", "vol-a", "--full-clone", "--name", "copy").stdout
    )
    assert run("volume", "extend", "vol-a", "--size", "2").returncode == 0
    assert run("volume", "revert", "vol-a", "--snapshot", "snap-a").returncode == 0
    assert run("volume", "reset-state", "clone-a", "--state", "error").returncode == 0
    assert run("volume", "delete", "clone-a").returncode == 0
    assert run("volume", "delete", "copy").returncode == 0
    assert run("snapshot", "delete", "snap-a").returncode == 0
    assert run("volume", "extend", "vol-a", "--size", "1").returncode == 1  # refused: no line
    text = log.read_text()
    expected = [
        ("INFO", rf"Created volume {volume['id']} \(name 'vol-a', 1 GiB\)"),
        ("INFO", rf"Created snapshot {snap['id']} \(name 'snap-a'\) of volume {volume['id']}"),
        ("INFO", rf"Created volume {clone['id']} \(name 'clone-a'.*from snapshot {snap['id']}"),
        ("INFO", rf"Created volume {full['id']} \(name 'copy'.*a full copy of volume"),
        ("INFO", rf"Extended volume {volume['id']} \(name 'vol-a'\) from 1 to 2 GiB"),
        ("INFO", rf"Reverted volume {volume['id']} \(name 'vol-a'\) to snapshot {snap['id']}"),
        ("WARNING", rf"Status of volume {clone['id']} reset by hand from available to error"),
        ("INFO", rf"Deleted volume {clone['id']} \(name 'clone-a'\)"),
        ("INFO", rf"Deleted snapshot {snap['id']} \(name 'snap-a'\)"),
    ]
    for level, pattern in expected:
        assert re.search(rf" {level} \S+ .*{pattern}", text), (level, pattern, text)


def test_a_failed_operation_is_logged_with_its_reason(tmp_path):
    state = tmp_path / "state"
    log = tmp_path / "evs.log"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    env_fault = {"EVS_FAULT_INJECT": "extend_volume.after_backend=raise"}
    result = evs(
        state,
        "--log-file",
        log,
        "volume",
        "extend",
        "v",
        "--size",
        "2",
        env=env_for(state, **env_fault),
    )
    assert result.returncode == 1
    text = log.read_text()
    assert re.search(r" ERROR \S+ .*Volume \S+ is now error_extending: .*injected", text), text
