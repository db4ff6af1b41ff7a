"""Test helpers for real NBD clients: skip markers and a checked subprocess runner."""

import shutil
import subprocess

import pytest

PACKAGES = {
    "qemu-io": "qemu-utils",
    "qemu-img": "qemu-utils",
    "nbdinfo": "libnbd-bin",
    "nbdcopy": "libnbd-bin",
    "fio": "fio",
    "openssl": "openssl",
}


def requires(*tools: str):
    """Skip, naming the Debian package, when a client binary is missing."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    reason = ", ".join(f"{t} is not installed (apt-get install {PACKAGES[t]})" for t in missing)
    return pytest.mark.skipif(bool(missing), reason=reason)


def run(*cmd: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a client; with ``ok`` fail the test (showing its output) unless it exits 0."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if ok and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def qemu_io(uri: str, *commands: str, read_only: bool = False, ok: bool = True):
    """Run qemu-io commands against a raw NBD export; qemu-io exits 0 even when one fails,
    so failures are found in its output."""
    cmd = ["qemu-io", "-f", "raw"] + (["-r"] if read_only else [])
    for command in commands:
        cmd += ["-c", command]
    result = run(*cmd, uri, ok=ok)
    output = result.stdout + result.stderr
    if ok and ("failed" in output or "error" in output.lower()):
        pytest.fail(f"qemu-io {commands} reported a failure:\n{output}")
    return output
