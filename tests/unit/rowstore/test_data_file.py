"""The data file is the pool's: truncated, replaced, foreign or missing ones are refused."""

import os
import shutil
import sqlite3

import pytest

from evs_driver import exception
from evs_driver.rowstore import Pool
from evs_driver.rowstore.chunkstore import IDENTITY_BYTES
from evs_driver.rowstore.metastore import FORMAT_VERSION
from tests.unit.rowstore.conftest import CHUNK

CAPACITY = 512 * CHUNK  # 2 MiB, so `truncate -s 1M` cuts it


def _pool_with_data(path: str) -> None:
    with Pool.create(path, CAPACITY, CHUNK, background=False) as pool:
        pool.create_volume("v", 8 * CHUNK)
        pool.write("v", 0, b"precious" * (8 * CHUNK // 8))


def _refused(path: str, *words: str) -> str:
    with pytest.raises(exception.PoolCorrupt) as raised:
        Pool.open(path, background=False)
    message = str(raised.value)
    assert path in message
    for word in words:
        assert word in message, message
    return message


def test_the_data_file_is_sized_and_stamped_at_creation(tmp_path):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    assert os.path.getsize(f"{path}/data") == CAPACITY + IDENTITY_BYTES
    with Pool.open(path, background=False) as pool:
        assert pool.check().clean


@pytest.mark.parametrize("size", [1 << 20, CAPACITY, CAPACITY + IDENTITY_BYTES - 1, 0])
def test_a_truncated_data_file_is_refused(tmp_path, size):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    os.truncate(f"{path}/data", size)
    _refused(path, f"{path}/data is {size} bytes", "truncated", "restore")


def test_a_truncated_and_regrown_data_file_is_refused(tmp_path):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    os.truncate(f"{path}/data", 1 << 20)
    os.truncate(f"{path}/data", CAPACITY + IDENTITY_BYTES)  # the right size, data gone
    _refused(path, f"{path}/data is not this pool's")


def test_a_missing_data_file_is_refused(tmp_path):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    os.unlink(f"{path}/data")
    _refused(path, f"{path}/data is missing")


def test_another_pools_data_file_is_refused(tmp_path):
    path, other = str(tmp_path / "p"), str(tmp_path / "other")
    _pool_with_data(path)
    _pool_with_data(other)
    shutil.copyfile(f"{other}/data", f"{path}/data")
    _refused(path, f"{path}/data belongs to another pool")
    with Pool.open(other, background=False) as pool:  # the copy's source is fine
        assert pool.check().clean


def test_check_reports_a_data_file_truncated_while_open_and_reads_fail(tmp_path):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    with Pool.open(path, background=False) as pool:
        os.truncate(f"{path}/data", CHUNK)
        problems = pool.check().problems
        assert any(f"{path}/data is {CHUNK} bytes" in p for p in problems), problems
        with pytest.raises(exception.PoolCorrupt, match="truncated"):
            pool.read("v", 0, 8 * CHUNK)


def test_check_reports_a_data_file_replaced_while_open(tmp_path):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    with Pool.open(path, background=False) as pool:
        shutil.copyfile(f"{path}/data", f"{path}/data.copy")
        os.rename(f"{path}/data.copy", f"{path}/data")
        assert any("was replaced while the pool was open" in p for p in pool.check().problems)
        os.unlink(f"{path}/data")
        assert any("was removed while the pool was open" in p for p in pool.check().problems)


def _as_format(path: str, version: int) -> None:
    """Make a pool look like one written before the data file had an identity block."""
    os.truncate(f"{path}/data", CAPACITY)
    db = sqlite3.connect(f"{path}/metadata.sqlite")
    with db:
        db.execute("DELETE FROM pool WHERE key = 'pool_id'")
        db.execute("UPDATE pool SET value = ? WHERE key = 'format_version'", (version,))
        if version < 2:
            db.execute("DROP TABLE overlays")
    db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_pool_is_stamped_when_opened(tmp_path, version):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    _as_format(path, version)
    with Pool.open(path, background=False) as pool:
        assert pool.read("v", 0, 8) == b"precious"
        assert pool.check().clean
    assert os.path.getsize(f"{path}/data") == CAPACITY + IDENTITY_BYTES
    db = sqlite3.connect(f"{path}/metadata.sqlite")
    settings = dict(db.execute("SELECT key, value FROM pool"))
    db.close()
    assert int(settings["format_version"]) == FORMAT_VERSION and len(settings["pool_id"]) == 32
    os.truncate(f"{path}/data", CAPACITY)
    _refused(path, "truncated")  # from now on its identity is checked


def test_a_truncated_format_2_pool_is_refused_not_upgraded(tmp_path):
    path = str(tmp_path / "p")
    _pool_with_data(path)
    _as_format(path, 2)
    os.truncate(f"{path}/data", 1 << 20)
    _refused(path, f"{path}/data is {1 << 20} bytes", "truncated")
    assert os.path.getsize(f"{path}/data") == 1 << 20
