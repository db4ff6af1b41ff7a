"""EVS_RULES.md through the VolumeManager on the real local backend, one table per rule."""

import os
import unittest

import ddt
import pytest

from evs_driver import exception, rules
from evs_driver.manager import VolumeManager
from evs_driver.rowstore import Pool
from tests.unit.test_conf import make_conf

GiB = 1024**3
MiB = 1024**2
CHUNK = 65536
OTHER_VOLUME_STATUSES = [s for s in rules.VOLUME_STATUSES if s not in ("available", "in-use")]


def new_manager(tmp_path, text: str | None = None, **overrides) -> VolumeManager:
    """A manager over a 4 GiB local pool in ``tmp_path``."""
    return VolumeManager(make_conf(tmp_path / "state", text, **overrides))


def write(m: VolumeManager, ref: str, offset: int, data: bytes) -> None:
    """Write through the volume's block device."""
    vol = m.get_volume(ref)
    with m.lock(vol.backend), m.driver_for(vol).open_device(vol, writable=True) as dev:
        dev.write(offset, data)
        dev.flush()


def read(m: VolumeManager, kind: str, ref: str, offset: int, length: int) -> bytes:
    """Read a volume's or snapshot's bytes."""
    rec = m.get_volume(ref) if kind == "volume" else m.get_snapshot(ref)
    with m.lock(rec.backend), m.driver_for(rec).open_device(rec, writable=False) as dev:
        return dev.read(offset, length)


def used(m: VolumeManager) -> int:
    """Pool bytes in use after collecting deleted devices."""
    driver = m.drivers["local"]
    with m.lock("local"):
        driver.collect()
        stats = driver.pool_stats()
    return stats.total_bytes - stats.free_bytes


def state(m: VolumeManager) -> tuple:
    """Everything a failed request must leave unchanged."""
    vols = [(v.id, v.display_name, v.size, v.status) for v in m.list_volumes()]
    snaps = [(s.id, s.display_name, s.volume_size, s.status) for s in m.list_snapshots()]
    return vols, snaps, used(m)


def block(tag: str) -> bytes:
    return (tag.encode() * CHUNK)[:CHUNK]


@pytest.fixture
def m(tmp_path):
    manager = new_manager(tmp_path)
    yield manager
    manager.close()


# -- rule 1: what a snapshot is -----------------------------------------------------------
def test_rule1_the_evs_example(m):
    m.create_volume(1, name="v1")
    write(m, "v1", 0, block("d1"))
    write(m, "v1", CHUNK, block("d2"))
    before = used(m)
    m.create_snapshot("v1", name="s1")
    assert used(m) == before  # 1.1: no data copied
    write(m, "v1", 2 * CHUNK, block("d3"))
    write(m, "v1", CHUNK, block("d4"))
    assert used(m) == before + 2 * CHUNK  # 1.2: d3 and d4 in new space
    assert read(m, "snapshot", "s1", 0, 2 * CHUNK) == block("d1") + block("d2")
    m.create_snapshot("v1", name="s2")
    assert read(m, "snapshot", "s2", 0, 3 * CHUNK) == block("d1") + block("d4") + block("d3")
    assert m.check() == {"local": []}


def test_rule1_snapshot_cost_does_not_depend_on_data(m):
    m.create_volume(1, name="small")
    m.create_volume(1, name="big")
    write(m, "big", 0, os.urandom(4 * MiB))
    before = used(m)
    m.create_snapshot("small")
    m.create_snapshot("big")
    assert used(m) == before


# -- rule 2: creating a snapshot ----------------------------------------------------------
@ddt.ddt
class TestSnapshotCreate(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _m(self, m, monkeypatch):
        self.m = m
        self.monkeypatch = monkeypatch
        self.vol = m.create_volume(2, name="v")

    @ddt.data("available", "in-use")
    def test_allowed_statuses(self, status):
        self.m.reset_status("volume", "v", status)
        snap = self.m.create_snapshot("v")
        assert snap.status == "available"

    @ddt.idata(OTHER_VOLUME_STATUSES)
    def test_refused_statuses(self, status):
        self.m.reset_status("volume", "v", status)
        before = state(self.m)
        with pytest.raises(exception.InvalidStatus, match=f"is {status}"):
            self.m.create_snapshot("v")
        assert state(self.m) == before

    @ddt.data(
        ("n" * 255, True),
        ("n" * 256, False),
        ("é" * 127, True),  # 254 bytes
        ("é" * 128, False),  # 256 bytes
        ("中" * 85, True),  # 255 bytes
        ("中" * 86, False),  # 258 bytes
        ("autobk_snapshot_1", False),
        ("my_autobk_snapshot_1", True),
        ("", True),
    )
    @ddt.unpack
    def test_name_rules(self, name, ok):
        before = state(self.m)
        if ok:
            assert self.m.create_snapshot("v", name=name).display_name == name
        else:
            with pytest.raises(exception.InvalidInput):
                self.m.create_snapshot("v", name=name)
            assert state(self.m) == before

    @ddt.data(("d" * 255, True), ("d" * 256, False), ("é" * 128, False))
    @ddt.unpack
    def test_description_rules(self, description, ok):
        if ok:
            assert self.m.create_snapshot("v", description=description)
        else:
            with pytest.raises(exception.InvalidInput, match="description"):
                self.m.create_snapshot("v", description=description)

    def test_records_size_and_exclusive_bytes(self):
        write(self.m, "v", 0, block("a"))
        snap = self.m.create_snapshot("v")
        self.m.extend_volume("v", 3)
        assert self.m.get_snapshot(snap.id).volume_size == 2
        assert self.m.usage(snap).exclusive_bytes == 0
        write(self.m, "v", 0, block("b"))
        assert self.m.usage(snap).exclusive_bytes == CHUNK


@ddt.ddt
class TestSnapshotLimit(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp_path = tmp_path

    @ddt.data((None, 7), (2, 2), (1, 1))
    @ddt.unpack
    def test_limit_error_names_limit_and_count(self, configured, limit):
        overrides = {} if configured is None else {"max_snapshots_per_volume": configured}
        m = new_manager(self.tmp_path, **overrides)
        try:
            m.create_volume(1, name="v")
            for _ in range(limit):
                m.create_snapshot("v")
            before = state(m)
            with pytest.raises(exception.SnapshotLimitExceeded) as err:
                m.create_snapshot("v")
            assert f"already has {limit} snapshots" in err.value.msg
            assert f"is {limit}" in err.value.msg
            assert state(m) == before
        finally:
            m.close()

    def test_zero_means_no_limit(self):
        m = new_manager(self.tmp_path, max_snapshots_per_volume=0)
        try:
            m.create_volume(1, name="v")
            for _ in range(10):
                m.create_snapshot("v")
            assert len(m.list_snapshots("v")) == 10
        finally:
            m.close()


# -- rule 3: reverting --------------------------------------------------------------------
@ddt.ddt
class TestRevert(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _m(self, m, monkeypatch):
        self.m = m
        self.monkeypatch = monkeypatch
        m.create_volume(1, name="v")
        write(m, "v", 0, block("one"))
        m.create_snapshot("v", name="s1")
        write(m, "v", 0, block("two"))
        m.create_snapshot("v", name="s2")
        write(m, "v", 0, block("three"))

    def test_only_to_own_snapshot(self):
        self.m.create_volume(1, name="w")
        self.m.create_snapshot("w", name="ws")
        before = state(self.m)
        with pytest.raises(exception.InvalidInput, match="own snapshots"):
            self.m.revert_volume("v", "ws")
        assert state(self.m) == before

    @ddt.data("available", "error_rollbacking")
    def test_allowed_volume_statuses(self, status):
        self.m.reset_status("volume", "v", status)
        assert self.m.revert_volume("v", "s1").status == "available"
        assert read(self.m, "volume", "v", 0, CHUNK) == block("one")

    @ddt.idata([s for s in rules.VOLUME_STATUSES if s not in ("available", "error_rollbacking")])
    def test_refused_volume_statuses(self, status):
        self.m.reset_status("volume", "v", status)
        before = state(self.m)
        with pytest.raises(exception.InvalidStatus):
            self.m.revert_volume("v", "s1")
        assert state(self.m) == before
        assert read(self.m, "volume", "v", 0, CHUNK) == block("three")

    @ddt.idata([s for s in rules.SNAPSHOT_STATUSES if s != "available"])
    def test_refused_snapshot_statuses(self, status):
        self.m.reset_status("snapshot", "s1", status)
        before = state(self.m)
        with pytest.raises(exception.InvalidStatus):
            self.m.revert_volume("v", "s1")
        assert state(self.m) == before

    def test_any_snapshot_any_number_of_times_all_survive(self):
        for name, tag in (("s1", "one"), ("s2", "two"), ("s1", "one"), ("s1", "one")):
            self.m.revert_volume("v", name)
            assert read(self.m, "volume", "v", 0, CHUNK) == block(tag)
        assert read(self.m, "snapshot", "s1", 0, CHUNK) == block("one")
        assert read(self.m, "snapshot", "s2", 0, CHUNK) == block("two")
        assert [s.status for s in self.m.list_snapshots("v")] == ["available"] * 2

    def test_keeps_current_size_zeros_beyond_snapshot(self):
        self.m.extend_volume("v", 2)
        write(self.m, "v", GiB + 4096, b"late")
        self.m.revert_volume("v", "s1")
        assert self.m.get_volume("v").size == 2
        assert read(self.m, "volume", "v", GiB + 4096, 4) == bytes(4)

    def test_statuses_during_revert_and_failure(self):
        """Fault injection: a probe at the injection point reads the statuses mid-revert."""
        seen = {}

        def probe(name):
            if name == "revert.after_backend":
                seen["volume"] = self.m.get_volume("v").status
                seen["snapshot"] = self.m.get_snapshot("s1").status
                raise exception.BackendError(backend="local", reason="injected")

        self.monkeypatch.setattr("evs_driver.faults.point", probe)
        with pytest.raises(exception.BackendError):
            self.m.revert_volume("v", "s1")
        assert seen == {"volume": "rollbacking", "snapshot": "rollbacking"}
        assert self.m.get_volume("v").status == "error_rollbacking"
        assert self.m.get_snapshot("s1").status == "available"
        self.monkeypatch.undo()
        self.m.revert_volume("v", "s1")  # 3.5: revert again from error_rollbacking
        assert self.m.get_volume("v").status == "available"


def test_rule3_error_rollbacking_volume_can_be_deleted(m):
    m.create_volume(1, name="v")
    m.reset_status("volume", "v", "error_rollbacking")
    m.delete_volume("v")
    assert m.list_volumes() == []


# -- rule 4: volume from snapshot, clones ------------------------------------------------
@ddt.ddt
class TestFromSnapshot(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _m(self, m, monkeypatch):
        self.m = m
        self.monkeypatch = monkeypatch
        m.create_volume(2, name="v")
        write(m, "v", 0, block("snap"))
        m.create_snapshot("v", name="s")
        write(m, "v", 0, block("later"))

    @ddt.data((None, 2), (2, 2), (5, 5))
    @ddt.unpack
    def test_size_defaults_and_may_grow(self, size, expected):
        vol = self.m.create_volume(size, snapshot="s")
        assert vol.size == expected
        assert read(self.m, "volume", vol.id, 0, CHUNK) == block("snap")
        if expected > 2:
            assert read(self.m, "volume", vol.id, 2 * GiB, 8) == bytes(8)

    @ddt.data(1)
    def test_smaller_than_snapshot_refused(self, size):
        before = state(self.m)
        with pytest.raises(exception.InvalidSize, match="smaller than the snapshot"):
            self.m.create_volume(size, snapshot="s")
        assert state(self.m) == before

    @ddt.idata([s for s in rules.SNAPSHOT_STATUSES if s != "available"])
    def test_snapshot_must_be_available(self, status):
        self.m.reset_status("snapshot", "s", status)
        with pytest.raises(exception.InvalidStatus):
            self.m.create_volume(snapshot="s")

    def test_independent_of_snapshot_and_source(self):
        a = self.m.create_volume(snapshot="s", name="a")
        b = self.m.create_volume(snapshot="s", name="b")
        write(self.m, "a", 0, block("mine"))
        assert read(self.m, "volume", "b", 0, CHUNK) == block("snap")  # 4.4: own writes
        self.m.delete_volume("v", cascade=True)
        assert read(self.m, "volume", a.id, 0, CHUNK) == block("mine")
        assert read(self.m, "volume", b.id, 0, CHUNK) == block("snap")
        assert self.m.check() == {"local": []}

    def test_linked_clone_copies_nothing(self):
        before = used(self.m)
        self.m.create_volume(snapshot="s")
        assert used(self.m) == before

    @ddt.data("snapshot", "source_volume")
    def test_full_clone_shares_nothing_with_progress(self, source):
        seen = []
        kwargs = {source: "s" if source == "snapshot" else "v"}
        vol = self.m.create_volume(
            full_clone=True, progress=lambda d, t: seen.append((d, t)), **kwargs
        )
        assert vol.progress == 100 and vol.full_clone
        assert seen[-1] == (2 * GiB, 2 * GiB)
        usage = self.m.usage(vol)
        assert usage.exclusive_bytes == usage.mapped_bytes == CHUNK
        want = block("snap") if source == "snapshot" else block("later")
        assert read(self.m, "volume", vol.id, 0, CHUNK) == want

    @ddt.data((None, 2), (3, 3))
    @ddt.unpack
    def test_clone_volume_rules(self, size, expected):
        vol = self.m.create_volume(size, source_volume="v")
        assert vol.size == expected and vol.source_volume_id == self.m.get_volume("v").id
        assert read(self.m, "volume", vol.id, 0, CHUNK) == block("later")
        with pytest.raises(exception.InvalidSize):
            self.m.create_volume(1, source_volume="v")

    def test_snapshot_and_source_together_refused(self):
        with pytest.raises(exception.InvalidInput, match="not both"):
            self.m.create_volume(snapshot="s", source_volume="v")


# -- rule 5: deleting ----------------------------------------------------------------------
@ddt.ddt
class TestDelete(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _m(self, m, monkeypatch):
        self.m = m
        self.monkeypatch = monkeypatch
        m.create_volume(1, name="v")
        write(m, "v", 0, block("a"))
        m.create_snapshot("v", name="s")
        write(m, "v", 0, block("b"))

    # error_deleting: a delete that failed (a full file system, say) is retried by deleting.
    @ddt.data("available", "error", "error_deleting")
    def test_snapshot_allowed_statuses(self, status):
        self.m.reset_status("snapshot", "s", status)
        self.m.delete_snapshot("s")
        assert self.m.list_snapshots() == []

    @ddt.data("creating", "deleting", "rollbacking")
    def test_snapshot_refused_statuses(self, status):
        self.m.reset_status("snapshot", "s", status)
        before = state(self.m)
        with pytest.raises(exception.InvalidStatus):
            self.m.delete_snapshot("s")
        assert state(self.m) == before

    def test_snapshot_delete_frees_exactly_its_exclusive_space(self):
        snap = self.m.get_snapshot("s")
        exclusive = self.m.usage(snap).exclusive_bytes
        clone = self.m.create_volume(snapshot="s")
        assert self.m.usage(snap).exclusive_bytes == 0  # the clone shares it now
        before = used(self.m)
        self.m.delete_snapshot("s")
        assert used(self.m) == before  # nothing freed: the clone still refers to it
        assert read(self.m, "volume", clone.id, 0, CHUNK) == block("a")
        self.m.delete_volume(clone.id)
        assert used(self.m) == before - exclusive

    def test_snapshot_delete_does_not_touch_reverted_volume(self):
        self.m.revert_volume("v", "s")
        self.m.delete_snapshot("s")
        assert read(self.m, "volume", "v", 0, CHUNK) == block("a")

    def test_volume_with_snapshots_needs_cascade(self):
        self.m.create_snapshot("v")
        before = state(self.m)
        with pytest.raises(exception.VolumeHasSnapshots, match="has 2 snapshot"):
            self.m.delete_volume("v")
        assert state(self.m) == before

    def test_cascade_deletes_snapshots_not_volumes_made_from_them(self):
        child = self.m.create_volume(snapshot="s")
        self.m.delete_volume("v", cascade=True)
        assert [v.id for v in self.m.list_volumes()] == [child.id]
        assert self.m.list_snapshots() == []
        assert read(self.m, "volume", child.id, 0, CHUNK) == block("a")
        assert self.m.check() == {"local": []}

    def test_in_use_volume_cannot_be_deleted(self):
        self.m.reset_status("volume", "v", "in-use")
        before = state(self.m)
        with pytest.raises(exception.InvalidStatus, match="in-use"):
            self.m.delete_volume("v", cascade=True)
        assert state(self.m) == before

    @ddt.data("available", "error", "error_extending", "error_deleting", "error_rollbacking")
    def test_volume_delete_allowed_statuses(self, status):
        self.m.reset_status("volume", "v", status)
        self.m.delete_volume("v", cascade=True)
        assert self.m.list_volumes() == []

    @ddt.data("creating", "extending", "deleting", "rollbacking")
    def test_volume_delete_refused_while_busy(self, status):
        self.m.reset_status("volume", "v", status)
        with pytest.raises(exception.InvalidStatus):
            self.m.delete_volume("v", cascade=True)

    def test_deleting_what_is_gone_succeeds(self):
        vol, snap = self.m.get_volume("v"), self.m.get_snapshot("s")
        self.m.delete_snapshot(snap.id)
        self.m.delete_snapshot(snap.id)
        self.m.delete_volume(vol.id)
        self.m.delete_volume(vol.id)
        with pytest.raises(exception.NotFound):
            self.m.delete_volume("no-such-name")  # a name is a lookup, not an id


# -- rule 6: extending ---------------------------------------------------------------------
@ddt.ddt
class TestExtend(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _m(self, m, monkeypatch):
        self.m = m
        self.monkeypatch = monkeypatch
        m.create_volume(2, name="v")
        m.create_snapshot("v", name="s")

    def test_grows_with_snapshots_which_keep_their_size(self):
        self.m.extend_volume("v", 4)
        assert self.m.get_volume("v").size == 4
        assert self.m.get_snapshot("s").volume_size == 2
        assert self.m.usage(self.m.get_snapshot("s")).size == 2 * GiB

    @ddt.data(2, 1, 0, -1)
    def test_never_shrinks(self, size):
        before = state(self.m)
        with pytest.raises(exception.InvalidSize):
            self.m.extend_volume("v", size)
        assert state(self.m) == before

    @ddt.idata([s for s in rules.VOLUME_STATUSES if s != "available"])
    def test_refused_statuses(self, status):
        self.m.reset_status("volume", "v", status)
        with pytest.raises(exception.InvalidStatus):
            self.m.extend_volume("v", 3)


# -- rule 8: capacity ---------------------------------------------------------------------
@ddt.ddt
class TestCapacity(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp_path = tmp_path

    @ddt.data(
        # ratio, reserved %, request GiB, allowed (pool 4 GiB, 2 GiB provisioned already)
        (1.0, 0, 2, True),
        (1.0, 0, 3, False),
        (2.0, 0, 6, True),
        (2.0, 0, 7, False),
        (2.0, 50, 2, True),
        (2.0, 50, 3, False),
    )
    @ddt.unpack
    def test_over_subscription(self, ratio, reserved, request, ok):
        text = f"[local]\nmax_over_subscription_ratio = {ratio}\nreserved_percentage = {reserved}\n"
        m = new_manager(self.tmp_path, text)
        try:
            m.create_volume(2)
            before = state(m)
            if ok:
                m.create_volume(request)
            else:
                with pytest.raises(exception.OverSubscription, match="max_over_subscription"):
                    m.create_volume(request)
                assert state(m) == before
        finally:
            m.close()

    def test_full_pool_fails_writes_until_space_is_freed(self):
        tmp_path = self.tmp_path
        # A 1 MiB pool made ahead of time (local_pool_capacity_gb counts whole GiB).
        pool_path = tmp_path / "state" / "pools" / "local"
        Pool.create(str(pool_path), 16 * CHUNK, CHUNK).close()
        m = new_manager(tmp_path, "[local]\nmax_over_subscription_ratio = 10000\n")
        try:
            m.create_volume(1, name="v")
            write(m, "v", 0, os.urandom(16 * CHUNK))
            m.create_snapshot("v", name="s")
            with pytest.raises(exception.PoolFull):
                write(m, "v", 0, block("x"))
            m.delete_snapshot("s")
            write(m, "v", 0, block("x"))
            assert read(m, "volume", "v", 0, CHUNK) == block("x")
            assert m.check() == {"local": []}
        finally:
            m.close()
