"""Pool statistics from report rows: free space bounded by data and by metadata."""

import dataclasses
import pathlib

from evs_driver.backends.lvm import report
from evs_driver.backends.lvm.inspect import pool_stats_from
from evs_driver.backends.lvm.naming import Naming

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
NAMING = Naming("evs-smoke", "volume-", "_snapshot-")


def rows():
    lvs = report.parse_lvs((FIXTURES / "lvs-smoke.json").read_text())
    pool = next(lv for lv in lvs if lv.name == "pool")
    thin = [lv for lv in lvs if lv.segtype == "thin" and lv.pool == "pool"]
    return pool, thin, [NAMING.kind_of(lv.name) for lv in thin]


def test_stats_of_the_captured_pool():
    pool, thin, kinds = rows()
    stats = pool_stats_from(pool, thin, kinds)
    assert stats.total_bytes == 2134900736
    assert (stats.volume_count, stats.snapshot_count) == (2, 1)
    assert stats.provisioned_bytes == 67108864 + 134217728 + 67108864
    assert stats.metadata_bytes == 4194304
    assert stats.metadata_free_bytes == 4194304 - round(4194304 * 0.1104)
    # 11.04% of the metadata used bounds the mappable data to 88.96% of the pool.
    assert stats.free_bytes == round(2134900736 * (1 - 0.1104))


def test_exhausted_data_means_no_free_space():
    pool, thin, kinds = rows()
    full = dataclasses.replace(pool, data_percent=100.0)
    assert pool_stats_from(full, thin, kinds).free_bytes == 0


def test_exhausted_metadata_means_no_free_space_even_with_data_left():
    pool, thin, kinds = rows()
    full = dataclasses.replace(pool, data_percent=10.0, metadata_percent=100.0)
    stats = pool_stats_from(full, thin, kinds)
    assert stats.free_bytes == 0 and stats.metadata_free_bytes == 0
