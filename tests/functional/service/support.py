"""Running the real ``evs-volume`` service and ``evs`` commands against it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from evs_driver.service import protocol
from tests.functional.cli.support import TIMEOUT, env_for, evs

MiB = 1024**2


def service_cmd(*args) -> list[str]:
    """The command line of ``evs-volume``."""
    return [sys.executable, "-m", "evs_driver.cmd.volume_service", *map(str, args)]


def answers(state) -> bool:
    """True when a service answers ``ping`` on the state path's control socket."""
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(os.path.join(str(state), protocol.SOCKET_NAME))
        sock.sendall(protocol.request("ping"))
        return bool(protocol.parse_reply(sock.makefile("rb").readline()))
    except Exception:  # not there yet, or going away
        return False
    finally:
        sock.close()


class Service:
    """One ``evs-volume`` process on ``state`` with its log file."""

    def __init__(self, state, log, **env):
        self.state = state
        self.log = log
        self.env = env  # extra environment variables
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        """Start it and wait until it answers (a bound on a hang, not a timing check)."""
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                service_cmd("--debug"), env=env_for(self.state, **self.env), stdout=log, stderr=log
            )
        deadline = time.monotonic() + TIMEOUT
        while not answers(self.state):
            if self.proc.poll() is not None:
                pytest.fail(f"evs-volume exited {self.proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"evs-volume did not answer:\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def stop(self, sig=signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=TIMEOUT)

    def log_text(self) -> str:
        with open(self.log) as f:
            return f.read()


def ok(state, *args):
    """``evs ... -f json`` that must succeed; its parsed output (None when it printed nothing)."""
    result = evs(state, *args, "-f", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None
