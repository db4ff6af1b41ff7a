"""Run engine code as a user that file modes apply to (root ignores them)."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import evs_driver

NOBODY = 65534
REPO = os.path.dirname(os.path.dirname(os.path.abspath(evs_driver.__file__)))


def _python_for(uid: int) -> str | None:
    """A Python interpreter that ``uid`` can run and that imports this checkout's engine."""
    for python in dict.fromkeys((sys.executable, shutil.which("python3"), "/usr/bin/python3")):
        if not python:
            continue
        try:
            probe = subprocess.run(
                [python, "-c", "import evs_driver.rowstore"],
                env={"PYTHONPATH": REPO, "PATH": os.environ.get("PATH", "")},
                user=uid if os.geteuid() == 0 else None,
                group=uid if os.geteuid() == 0 else None,
                capture_output=True,
                check=False,
            )
        except PermissionError:  # the interpreter lives where uid may not look
            continue
        if probe.returncode == 0:
            return python
    return None


class Unprivileged:
    """A scratch directory owned by the unprivileged user, and a way to run code as them."""

    def __init__(self):
        self.uid = NOBODY if os.geteuid() == 0 else os.geteuid()
        self.python = _python_for(self.uid)
        if self.python is None:
            reason = f"no Python that uid {self.uid} can run imports evs_driver from {REPO}"
            print(f"SKIP: {reason}")
            pytest.skip(reason)
        self.directory = tempfile.mkdtemp(prefix="evs-unprivileged-")
        os.chmod(self.directory, 0o755)

    def own(self, path: str) -> None:
        """Give ``path`` and everything below it to the unprivileged user."""
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(path):
            for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.chown(name, self.uid, self.uid)

    def run(self, code: str) -> subprocess.CompletedProcess:
        """Run Python ``code`` as the unprivileged user."""
        root = os.geteuid() == 0
        return subprocess.run(
            [self.python, "-c", code],
            env={"PYTHONPATH": REPO, "PATH": os.environ.get("PATH", "")},
            user=self.uid if root else None,
            group=self.uid if root else None,
            capture_output=True,
            text=True,
            check=False,
        )

    def cleanup(self) -> None:
        for root, dirs, _ in os.walk(self.directory):
            for name in (root, *(os.path.join(root, d) for d in dirs)):
                os.chmod(name, 0o700)
        shutil.rmtree(self.directory)
