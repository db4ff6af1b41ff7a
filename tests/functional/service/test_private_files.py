"""Volume data is private: every file the product creates is owner-only, whatever the umask.

Real ``evs`` and ``evs-volume`` processes started under umask 022 (the common default that
made the catalog and pools world-readable) create a state tree with a volume, a snapshot,
an NBD export and exported images; then every directory must be 0700 and every file or
socket 0600.
"""

import os
import stat

from tests.functional.cli.support import evs
from tests.functional.service.support import Service, ok


def _modes(root: str) -> dict[str, int]:
    """Permission bits of everything under ``root`` (the root itself included)."""
    found = {root: stat.S_IMODE(os.lstat(root).st_mode)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            found[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def _wrong(modes: dict[str, int]) -> dict[str, str]:
    wrong = {}
    for path, mode in modes.items():
        want = 0o700 if os.path.isdir(path) and not os.path.islink(path) else 0o600
        if mode != want:
            wrong[path] = oct(mode)
    return wrong


def test_every_file_is_owner_only_under_umask_022(tmp_path):
    state = str(tmp_path / "state")
    old = os.umask(0o022)
    try:
        assert evs(state, "volume", "create", "--size", "1", "--name", "v").returncode == 0
        assert evs(state, "snapshot", "create", "v", "--name", "s").returncode == 0
        exported = tmp_path / "out"
        exported.mkdir(mode=0o755)
        assert evs(state, "volume", "export", "v", str(exported / "v.raw")).returncode == 0
        service = Service(state, str(tmp_path / "service.log")).start()
        try:
            ok(state, "volume", "serve", "v")
            ok(state, "snapshot", "export", "s", str(exported / "s.qcow2"), "-O", "qcow2")
            modes = _modes(state)  # while the sockets and run directory exist
            ok(state, "volume", "unserve", "v")
        finally:
            service.stop()
    finally:
        os.umask(old)
    assert os.path.join(state, "run", "nbd.sock") in modes
    assert os.path.join(state, "pools", "local", "data") in modes
    assert _wrong(modes) == {}
    images = {str(p): stat.S_IMODE(p.stat().st_mode) for p in exported.iterdir()}
    assert len(images) == 2 and _wrong(images) == {}
