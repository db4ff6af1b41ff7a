"""The remembered state path: taken only while everything it was resolved from holds.

Real config files read by oslo.config through ``evs.load_config``; ``loaded_from`` is the
time the load started, given a few seconds ahead where a test needs files older than the
racy window without sleeping through it.
"""

import os
import time

import pytest

from evs_driver.cmd import evs, parser, socket_cache

AHEAD = (socket_cache.RACY_SECONDS + 5) * 1_000_000_000


@pytest.fixture
def setup(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "evs.ini"
    config.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'state'}\n")
    return tmp_path, config


def remember(config, loaded_from=None) -> str:
    args = parser.parse(["--config-file", str(config), "volume", "list"])
    started = time.time_ns() + AHEAD if loaded_from is None else loaded_from
    conf = evs.load_config(args)
    socket_cache.remember(args.config_file, conf, conf.state_path, started)
    return conf.state_path


def test_a_remembered_state_path_is_found_again(setup):
    tmp_path, config = setup
    assert remember(config) == str(tmp_path / "state")
    assert socket_cache.lookup([str(config)]) == str(tmp_path / "state")
    assert socket_cache.lookup([]) is None  # another command line
    cache = tmp_path / "home" / ".cache" / "evs" / "control-sockets.json"
    assert cache.stat().st_mode & 0o777 == 0o600


def test_a_changed_config_file_is_not_trusted(setup):
    tmp_path, config = setup
    remember(config)
    config.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'other'}\n")
    assert socket_cache.lookup([str(config)]) is None


def test_a_config_file_appearing_in_a_default_place_is_not_missed(setup):
    tmp_path, config = setup
    remember(config)
    (tmp_path / "home" / "evs.conf.d").mkdir()  # oslo.config reads it even with --config-file
    assert socket_cache.lookup([str(config)]) is None


def test_files_changed_just_before_the_load_are_not_remembered(setup):
    _, config = setup
    remember(config, loaded_from=time.time_ns())  # the config file was written just now
    assert socket_cache.lookup([str(config)]) is None


def test_another_environment_or_directory_is_another_configuration(setup, monkeypatch):
    tmp_path, config = setup
    remember(config)
    monkeypatch.setenv("OS_DEFAULT__STATE_PATH", str(tmp_path / "other"))
    assert socket_cache.lookup([str(config)]) is None
    monkeypatch.delenv("OS_DEFAULT__STATE_PATH")
    monkeypatch.chdir(tmp_path / "home")
    assert socket_cache.lookup([str(config)]) is None


def test_logging_options_in_the_config_are_not_remembered(setup):
    tmp_path, config = setup
    config.write_text(f"[DEFAULT]\nstate_path = {tmp_path / 'state'}\ndebug = true\n")
    remember(config)
    assert socket_cache.lookup([str(config)]) is None


def test_a_cache_file_others_may_write_is_ignored(setup):
    tmp_path, config = setup
    remember(config)
    cache = tmp_path / "home" / ".cache" / "evs" / "control-sockets.json"
    os.chmod(cache, 0o622)
    assert socket_cache.lookup([str(config)]) is None
