"""``evs`` for a running ``evs-volume`` whose socket it remembers: no oslo, same answers.

The first command loads the configuration with oslo.config and remembers the state path it
resolved (``evs_driver.cmd.socket_cache``); later ones find the socket without oslo.config.
Each run below reports which heavy modules it imported, so the tests know which path ran.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from evs_driver.cmd import socket_cache
from tests.functional.cli.support import TIMEOUT, env_for

HEAVY = ("oslo_config", "oslo_log", "stevedore", "evs_driver.rowstore", "evs_driver.manager")
_PROBE = """
import json, sys
from evs_driver.cmd import evs
try:
    status = evs.main(sys.argv[2:])
finally:
    heavy = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in {heavy!r}))
    with open(sys.argv[1], "w") as report:
        json.dump(heavy, report)
sys.exit(status)
"""


@pytest.fixture
def home(state):
    """An empty home directory whose cache directory exists and is old enough to trust."""
    path = env_for(state)["HOME"]
    os.makedirs(os.path.join(path, ".cache"), mode=0o700, exist_ok=True)  # stevedore uses it too
    time.sleep(socket_cache.RACY_SECONDS + 0.2)  # ages the directories, not a timing check
    return path


def run(state, *argv, env=None):
    """(exit status, stdout, stderr, the heavy modules it imported) of one ``evs`` run."""
    report = os.path.join(state, "imported.json")  # not in HOME: the cache watches it
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), report, *argv],
        env=env or env_for(state),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    with open(report) as file:
        imported = json.load(file)
    return done.returncode, done.stdout, done.stderr, imported


def test_a_command_for_a_running_service_imports_neither_oslo_nor_the_engine(service, state, home):
    status, _, stderr, imported = run(state, "volume", "create", "--size", "1", "--name", "v")
    assert status == 0, stderr
    assert "oslo_config" in imported  # the first one loads the configuration
    status, out, stderr, imported = run(state, "snapshot", "create", "v", "--name", "s1")
    assert (status, imported) == (0, []), stderr
    assert "| s1 " in out
    data = os.urandom(1 << 20)  # the copies qemu-img makes from this process work too
    with open(os.path.join(home, "in.raw"), "wb") as file:
        file.write(data)
    for verb, name in (("import", "in.raw"), ("export", "out.raw")):
        argv = ("volume", verb, "v", os.path.join(home, name), "-f", "json")
        status, _, stderr, imported = run(state, *argv)
        assert (status, imported) == (0, []), stderr
    with open(os.path.join(home, "out.raw"), "rb") as file:
        assert file.read(len(data)) == data
    cache = os.path.join(home, ".cache", "evs", "control-sockets.json")
    assert os.stat(cache).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(cache)).st_mode & 0o777 == 0o700


def test_the_client_path_answers_as_the_whole_command(service, state, home):
    assert run(state, "volume", "create", "--size", "1", "--name", "v")[0] == 0
    for argv in (
        ("volume", "list", "-f", "json"),
        ("volume", "show", "v"),
        ("-f", "json", "snapshot", "list"),
        ("volume", "show", "nosuch"),
        ("snapshot", "create", "nosuch", "--name", "x"),
        ("volume", "extend", "v", "--size", "0"),
        ("pool", "check", "-f", "json"),
    ):
        remembered = run(state, *argv)
        os.unlink(os.path.join(home, ".cache", "evs", "control-sockets.json"))
        loaded = run(state, *argv)  # oslo.config again: nothing remembered
        assert remembered[3] == [] and "oslo_config" in loaded[3], argv
        assert remembered[:3] == loaded[:3], argv


def test_a_changed_config_file_is_read_again(service, state, home):
    config = os.path.join(home, "evs.ini")
    with open(config, "w") as file:
        file.write(f"[DEFAULT]\nstate_path = {state}\n")
    time.sleep(socket_cache.RACY_SECONDS + 0.2)  # old enough to be remembered
    assert (
        run(state, "--config-file", config, "volume", "create", "--size", "1", "--name", "v")[0]
        == 0
    )
    status, out, _, imported = run(state, "--config-file", config, "volume", "list", "-f", "json")
    assert (status, imported, [v["name"] for v in json.loads(out)]) == (0, [], ["v"])
    other = os.path.join(home, "other")
    with open(config, "w") as file:
        file.write(f"[DEFAULT]\nstate_path = {other}\n")
    status, out, stderr, imported = run(
        state, "--config-file", config, "volume", "list", "-f", "json"
    )
    assert (status, json.loads(out)) == (0, []), stderr  # the new state path, embedded
    assert "oslo_config" in imported


def test_another_state_path_in_the_environment_is_not_taken_for_the_remembered_one(
    service, state, home
):
    assert run(state, "volume", "create", "--size", "1", "--name", "v")[0] == 0
    other = env_for(state, EVS_STATE_PATH=os.path.join(home, "other"))
    status, out, stderr, imported = run(state, "volume", "list", "-f", "json", env=other)
    assert (status, json.loads(out)) == (0, []), stderr
    assert "oslo_config" in imported
