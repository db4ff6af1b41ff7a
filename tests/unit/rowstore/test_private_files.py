"""Volume data is private: every file the engine makes is 0600 and its directory 0700."""

import os
import stat

import pytest

from evs_driver.rowstore import Pool
from tests.unit.rowstore.conftest import CHUNK


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(path: str) -> dict[str, int]:
    modes = {".": stat.S_IMODE(os.stat(path).st_mode)}
    for name in os.listdir(path):
        modes[name] = stat.S_IMODE(os.stat(os.path.join(path, name)).st_mode)
    return modes


def test_every_pool_file_is_private_under_umask_022(tmp_path, umask_022):
    path = str(tmp_path / "new" / "pool")
    with Pool.create(path, 64 * CHUNK, CHUNK, background=False) as pool:
        pool.create_volume("v", 8 * CHUNK)
        pool.write("v", 0, b"secret" * 100)
        pool.flush()
        open_modes = _modes(path)  # SQLite's log and index exist while the pool is open
    assert {"data", "metadata.sqlite", "metadata.sqlite-wal", "metadata.sqlite-shm", "lock"} <= set(
        open_modes
    )
    closed_modes = _modes(path)
    for modes in (open_modes, closed_modes):
        assert modes.pop(".") == 0o700
        assert set(modes.values()) == {0o600}, modes


def test_opening_an_older_pool_takes_group_and_other_access_away(tmp_path, umask_022):
    path = str(tmp_path / "pool")
    Pool.create(path, 64 * CHUNK, CHUNK, background=False).close()
    os.chmod(path, 0o755)
    for name in os.listdir(path):
        os.chmod(os.path.join(path, name), 0o644)
    Pool.open(path, background=False).close()
    modes = _modes(path)
    assert modes.pop(".") == 0o700
    assert set(modes.values()) == {0o600}, modes
