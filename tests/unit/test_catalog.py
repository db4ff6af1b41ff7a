"""The SQLite catalog: records round-trip, status moves are compare-and-set, errors roll back."""

import contextlib
import os
import threading

import pytest

from evs_driver import catalog, exception, sqlitelog


def _volume(**fields) -> catalog.Volume:
    stamp = catalog.now()
    values = dict(
        id=catalog.new_id(),
        display_name="v",
        display_description=None,
        size=1,
        status="available",
        backend="local",
        created_at=stamp,
        updated_at=stamp,
    )
    values.update(fields)
    return catalog.Volume(**values)


@pytest.fixture
def cat(tmp_path):
    return catalog.Catalog(str(tmp_path / "catalog.sqlite"))


def test_volume_round_trips_with_metadata_and_task(cat):
    vol = _volume(metadata={"k": "é"}, task={"op": "create", "owner": "x"})
    with cat.transaction() as txn:
        txn.add(vol)
    with cat.transaction() as txn:
        got = txn.volume(vol.id)
    assert got == vol
    assert got.name == f"volume-{vol.id}"
    assert got["size"] == 1


def test_move_status_is_compare_and_set_and_a_loss_raises(cat):
    vol = _volume()
    with cat.transaction() as txn:
        txn.add(vol)
        txn.move_status(vol, "deleting", expect=("available",))
        with pytest.raises(exception.StatusChanged, match="it is deleting, not available"):
            txn.move_status(vol, "extending", expect=("available",))
        with pytest.raises(ValueError, match="move_status"):
            txn.set_fields(vol, status="extending")
    with cat.transaction() as txn:
        assert txn.volume(vol.id).status == "deleting"


def test_racing_threads_cannot_both_move_a_status(cat):
    vol = _volume()
    with cat.transaction() as txn:
        txn.add(vol)
    wins = []
    barrier = threading.Barrier(8)

    def race(status):
        mine = catalog.Volume(**vol.to_dict())
        barrier.wait()
        with contextlib.suppress(exception.StatusChanged), cat.transaction() as txn:
            txn.move_status(mine, status, expect=("available",))
            wins.append(status)

    threads = [threading.Thread(target=race, args=(f"s{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    with cat.transaction() as txn:
        assert txn.volume(vol.id).status == wins[0]


def test_error_in_transaction_rolls_back(cat):
    vol = _volume()
    with pytest.raises(RuntimeError), cat.transaction() as txn:
        txn.add(vol)
        raise RuntimeError("boom")
    with cat.transaction() as txn:
        assert txn.volume(vol.id) is None


def test_filters_and_in_status(cat):
    a, b = _volume(display_name="a"), _volume(display_name="b", status="creating")
    snap = catalog.Snapshot(
        id=catalog.new_id(),
        display_name="s",
        display_description=None,
        volume_id=a.id,
        volume_size=1,
        status="available",
        backend="local",
        created_at=catalog.now(),
        updated_at=catalog.now(),
    )
    with cat.transaction() as txn:
        txn.add(a)
        txn.add(b)
        txn.add(snap)
    with cat.transaction() as txn:
        assert [v.id for v in txn.volumes(name="a")] == [a.id]
        assert [v.id for v in txn.in_status("volumes", ["creating"])] == [b.id]
        assert txn.snapshots(volume_id=a.id)[0].size == 1
        txn.remove(snap)
        assert txn.snapshots() == []


def test_unusable_catalog_path_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(exception.ConfigError, match="state_path"):
        catalog.Catalog(str(blocker / "catalog.sqlite"))


def test_not_a_database_is_a_config_error(tmp_path):
    path = tmp_path / "catalog.sqlite"
    junk = b"not sqlite" * 1000
    path.write_bytes(junk)
    with pytest.raises(exception.ConfigError, match="state_path"):
        catalog.Catalog(str(path))
    assert path.read_bytes() == junk  # left as it was


def test_a_transaction_syncs_the_log_once_when_it_changed_a_row(cat, monkeypatch):
    syncs = []
    real_sync = sqlitelog.LogSync.sync

    def counted(log):
        syncs.append(log)
        real_sync(log)

    monkeypatch.setattr(sqlitelog.LogSync, "sync", counted)
    vol = _volume()
    with cat.transaction() as txn:
        txn.add(vol)
    assert len(syncs) == 1
    with cat.transaction() as txn:
        txn.volume(vol.id)
    with cat.reading() as txn:
        txn.volume(vol.id)
    assert len(syncs) == 1  # nothing changed: nothing to make durable


def test_closing_keeps_the_log_and_the_next_open_reads_it(tmp_path):
    path = str(tmp_path / "catalog.sqlite")
    first = catalog.Catalog(path)
    vol = _volume()
    with first.transaction() as txn:
        txn.add(vol)
    first.close()
    assert os.path.getsize(path + "-wal") > 0  # no checkpoint at close
    again = catalog.Catalog(path, used_before=True)
    with again.reading() as txn:
        assert txn.volume(vol.id) == vol
    again.close()
