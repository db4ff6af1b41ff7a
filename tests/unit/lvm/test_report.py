"""Parsing LVM's reports, on output captured from real LVM in the test guest."""

import pathlib

import pytest

from evs_driver import exception
from evs_driver.backends.lvm import report

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_lvs_report_gives_typed_rows():
    lvs = {lv.name: lv for lv in report.parse_lvs(fixture("lvs-smoke.json"))}
    pool = lvs["pool"]
    assert pool.segtype == "thin-pool"
    assert pool.size == 2134900736
    assert pool.data_percent == pytest.approx(0.01)
    assert pool.metadata_percent == pytest.approx(11.04)
    assert pool.metadata_size == 4 * 1024 * 1024
    assert pool.chunk_size == 65536
    assert pool.when_full == "error"
    assert pool.active and pool.health == "-"
    snap = lvs["_snapshot-e322ade6-b01e-486b-a91e-f93884602ee5"]
    assert snap.skips_activation and snap.active
    assert snap.thin_id == 2 and snap.pool == "pool"
    assert snap.tag_value("evs-origin") == "b3602939-8531-4cee-a8c9-2cc6b80089fc"
    assert snap.tag_value("evs-revert") is None
    assert snap.metadata_percent is None and snap.metadata_size is None
    # Hidden LVs lose their brackets; origins are names too.
    assert "lvol0_pmspare" in lvs and "pool_tmeta" in lvs
    clone = lvs["volume-b1f4ce2d-34f6-4590-85fa-dcceb72c002c"]
    assert clone.origin == "_snapshot-e322ade6-b01e-486b-a91e-f93884602ee5"
    assert not clone.skips_activation


def test_captured_reports_of_the_functional_run_parse():
    lvs = report.parse_lvs(fixture("lvs.json"))
    assert any(lv.segtype == "thin-pool" for lv in lvs)
    (vg,) = report.parse_vgs(fixture("vgs.json"))
    assert vg.extent_size == 4 * 1024 * 1024 and 0 < vg.free < vg.size
    status = report.parse_pool_status(fixture("pool-status.txt"))
    assert status.mode == "rw" and status.used_data_blocks > 0


def test_full_pool_report_shows_exhausted_data():
    lvs = {lv.name: lv for lv in report.parse_lvs(fixture("lvs-pool-full.json"))}
    assert lvs["tiny"].data_percent == pytest.approx(100.0)


@pytest.mark.parametrize(
    "text",
    ["", "not json", '{"report": 3}', '{"report": [{"lv": [{"lv_name": "x"}]}]}'],
)
def test_malformed_lvs_output_is_a_backend_error(text):
    with pytest.raises(exception.BackendError, match="unexpected"):
        report.parse_lvs(text)


def test_number_fields_that_are_not_numbers_are_a_backend_error():
    text = fixture("lvs-smoke.json").replace('"lv_size":"67108864"', '"lv_size":"big"', 1)
    with pytest.raises(exception.BackendError, match="unexpected lvs output"):
        report.parse_lvs(text)


def test_pool_status_of_a_healthy_pool():
    status = report.parse_pool_status(fixture("pool-status-smoke.txt"))
    assert status.mode == "rw" and not status.failed and not status.needs_check
    assert (status.used_metadata_blocks, status.total_metadata_blocks) == (113, 1024)
    assert (status.used_data_blocks, status.total_data_blocks) == (2, 32576)


def test_pool_status_flags():
    line = "0 4169728 thin-pool 5 113/1024 32576/32576 - out_of_data_space discard_passdown "
    line += "error_if_no_space needs_check 256"
    status = report.parse_pool_status(line)
    assert status.mode == "out_of_data_space" and status.needs_check
    assert report.parse_pool_status("0 4169728 thin-pool Fail").failed


@pytest.mark.parametrize("line", ["", "0 100 linear", "0 100 thin-pool 5 x/y"])
def test_bad_pool_status_is_a_backend_error(line):
    with pytest.raises(exception.BackendError):
        report.parse_pool_status(line)


def test_thin_ls_rows():
    assert report.parse_thin_ls("1 65536 0\n 2 131072 65536\n\n") == {
        1: (65536, 0),
        2: (131072, 65536),
    }
    with pytest.raises(exception.BackendError):
        report.parse_thin_ls("DEV MAPPED\n")
