"""A damaged or unwritable metadata file is refused with the file named, and left unchanged."""

import hashlib
import os
import sqlite3

import pytest

from evs_driver import exception
from evs_driver.rowstore import Pool
from tests.unit.rowstore.conftest import CHUNK
from tests.unit.rowstore.unprivileged import Unprivileged


def _pool(path: str) -> None:
    with Pool.create(path, 64 * CHUNK, CHUNK, node_bits=2, background=False) as pool:
        pool.create_volume("v", 40 * CHUNK)
        pool.write("v", 0, b"x" * 40 * CHUNK)
        for n in range(20):
            pool.create_snapshot("v", f"s{n}")
            pool.write("v", n * CHUNK, b"y" * CHUNK)


def _fingerprint(path: str) -> dict:
    """Each pool file's name and content hash; not the lock (the opener's pid) nor SQLite's
    shared-memory index of its log (any reader may update it; it holds no data)."""
    found = {}
    for name in sorted(set(os.listdir(path)) - {"lock", "metadata.sqlite-shm"}):
        with open(os.path.join(path, name), "rb") as file:
            found[name] = hashlib.sha256(file.read()).hexdigest()
    return found


def _overwrite_header(meta: str) -> None:
    with open(meta, "r+b") as file:
        file.write(b"\xde\xad" * 64)


def _cut_in_half(meta: str) -> None:
    os.truncate(meta, os.path.getsize(meta) // 2)


def _empty(meta: str) -> None:
    os.truncate(meta, 0)


@pytest.mark.parametrize(
    "damage, words",
    [
        (_overwrite_header, "is not an SQLite database"),
        (_cut_in_half, "malformed"),
        (_empty, "is empty (0 bytes)"),
    ],
    ids=["overwritten-header", "cut-in-half", "empty"],
)
def test_a_damaged_metadata_file_is_refused_and_left_as_it_is(tmp_path, damage, words):
    path = str(tmp_path / "p")
    _pool(path)
    meta = f"{path}/metadata.sqlite"
    assert os.path.getsize(meta) > 8 * 8192  # enough pages that half of them are missing
    damage(meta)
    before = _fingerprint(path)
    for _ in range(2):  # a second try sees the same, so nothing was repaired half-way
        with pytest.raises(exception.PoolCorrupt) as raised:
            Pool.open(path, background=False)
        message = str(raised.value)
        assert path in message and meta in message and words in message, message
        assert "left unchanged; restore the pool directory from a backup" in message
    assert _fingerprint(path) == before


def test_a_half_written_create_leaves_no_pool_behind(tmp_path, monkeypatch):
    """The metadata file appears only once complete, so a failed create is not a pool."""
    from evs_driver.rowstore import metastore

    path = str(tmp_path / "p")

    def fail(*args):
        raise OSError(28, "No space left on device")  # fault injection: ENOSPC mid-create

    monkeypatch.setattr(metastore.MetaStore, "_create_tables", fail)
    with pytest.raises(Exception, match="No space left"):
        Pool.create(path, 64 * CHUNK, CHUNK, background=False)
    assert not os.path.exists(f"{path}/metadata.sqlite")
    monkeypatch.undo()
    Pool.create(path, 64 * CHUNK, CHUNK, background=False).close()  # and it can be retried


@pytest.fixture
def unprivileged():
    runner = Unprivileged()
    yield runner
    runner.cleanup()


_OPEN = "from evs_driver.rowstore import Pool; Pool.open({path!r}, background=False).close()"
_WRITE = (
    "from evs_driver.rowstore import Pool\n"
    "with Pool.open({path!r}, background=False) as pool:\n"
    "    pool.write('v', 0, b'after'); pool.create_snapshot('v', 'later')\n"
)


def _unprivileged_pool(unprivileged) -> str:
    path = os.path.join(unprivileged.directory, "pool")
    _pool(path)
    unprivileged.own(unprivileged.directory)
    return path


@pytest.mark.parametrize(
    "target, mode, words",
    [
        ("", 0o500, "cannot write the directory"),
        ("metadata.sqlite", 0o400, "cannot write the file"),
        ("data", 0o400, "cannot write the file"),
    ],
    ids=["directory", "metadata", "data"],
)
def test_a_read_only_pool_is_refused_naming_the_file(unprivileged, target, mode, words):
    path = _unprivileged_pool(unprivileged)
    named = os.path.join(path, target) if target else path
    os.chmod(named, mode)
    result = unprivileged.run(_OPEN.format(path=path))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "InvalidPool" in last and f"{words} {named} (mode {mode:04o}" in last, last
    os.chmod(named, 0o700 if not target else 0o600)
    result = unprivileged.run(_WRITE.format(path=path))
    assert result.returncode == 0, result.stderr


def test_stale_read_only_sqlite_files_stop_failing_once_the_mode_is_fixed(unprivileged):
    path = _unprivileged_pool(unprivileged)
    meta = f"{path}/metadata.sqlite"
    # SQLite's own last close folds the log in and removes it and its index...
    db = sqlite3.connect(meta, isolation_level=None)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert not os.path.exists(meta + "-wal")
    os.chmod(meta, 0o400)
    # ...and a read-only SQLite open makes them again with the metadata file's mode.
    stale = unprivileged.run(
        "import sqlite3\n"
        f"db = sqlite3.connect({meta!r}, isolation_level=None)\n"
        "db.execute('SELECT count(*) FROM devices').fetchall()\n"
    )
    assert stale.returncode == 0, stale.stderr
    for side in ("-wal", "-shm"):
        assert os.stat(meta + side).st_mode & 0o777 == 0o400
    os.chmod(meta, 0o600)  # the operator fixes the file they were told about
    result = unprivileged.run(_WRITE.format(path=path))
    assert result.returncode == 0, result.stderr


def test_a_side_file_of_another_user_is_named(unprivileged):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a file another user owns")
    path = _unprivileged_pool(unprivileged)
    wal = f"{path}/metadata.sqlite-wal"
    with open(wal, "wb"):
        pass
    os.chown(wal, 0, 0)
    os.chmod(wal, 0o600)
    result = unprivileged.run(_OPEN.format(path=path))
    assert result.returncode == 1
    assert f"cannot write the file {wal}" in result.stderr
