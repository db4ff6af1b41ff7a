"""The metadata store alone: one transaction per commit, and errors that name the file."""

import os
import sqlite3

import pytest

from evs_driver import exception
from evs_driver.rowstore import metafile, metastore
from evs_driver.rowstore.metastore import Change, MetaStore


def test_a_saved_change_is_read_back_after_reopening(meta, tmp_path):
    change = Change()
    change.nodes = [(1, 0, b"\1" * 16)]
    change.pages = [("data", 0, b"\2" * 8)]
    change.overlays = [(3, 2, 5)]
    change.devices = [(1, "v", "volume", 4096, 1, None, 1, 0.0)]
    change.settings = {"next_device_id": 2}
    meta.save(change)
    meta.close()
    again = MetaStore.open(meta.path, str(tmp_path))
    assert again.node(1) == (0, b"\1" * 16)
    assert again.pages("data") == {0: b"\2" * 8}
    assert again.overlays() == {3: (2, 5)}
    assert [row[1] for row in again.devices()] == ["v"]
    assert again.settings()["next_device_id"] == 2
    again.close()


def test_a_failed_save_stores_nothing(meta):
    change = Change()
    change.nodes = [(1, 0, b"x")]
    change.devices = [(1, "v", "not-a-kind", 1, 0, None, 0, 0.0)]  # violates a CHECK
    with pytest.raises(exception.EVSError, match="metadata.sqlite"):
        meta.save(change)
    assert meta.node(1) is None
    assert not meta.db.in_transaction


def test_a_newer_format_is_refused_and_an_older_one_upgraded(meta):
    with meta.transaction() as db:
        db.execute("UPDATE pool SET value = 99 WHERE key = 'format_version'")
    with pytest.raises(exception.InvalidPool, match="format version 99 is newer"):
        meta.format_version()
    with meta.transaction() as db:
        db.execute("UPDATE pool SET value = 1 WHERE key = 'format_version'")
        db.execute("DROP TABLE overlays")
    meta.upgrade({"pool_id": "abc"})
    assert meta.format_version() == metastore.FORMAT_VERSION
    assert meta.overlays() == {}


def test_validation_refuses_what_is_not_a_pool_without_writing(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    before = os.stat(path).st_mtime_ns
    with pytest.raises(exception.PoolCorrupt, match="does not hold an evs pool's tables"):
        metafile.validate(path, str(tmp_path))
    assert os.stat(path).st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == ["metadata.sqlite"]
    with pytest.raises(exception.InvalidPool, match="is missing"):
        metafile.validate(str(tmp_path / "nothing"), str(tmp_path))
