"""The checker alone, on metadata written by hand: it recomputes every count from the roots."""

from array import array

import pytest

from evs_driver.rowstore import checker
from evs_driver.rowstore.metastore import Change


def _counts(*counts: int) -> bytes:
    page = array("I", bytes(4 * 4096))
    for index, count in enumerate(counts):
        page[index] = count
    return page.tobytes()


def _store(meta, node_counts, chunk_counts, leaf=(1, 2, 0, 0), mapped=2, overlays=()):
    """One volume of 4 chunks (one leaf, fan-out 4) mapping ``leaf``."""
    change = Change()
    change.nodes = [(1, 0, array("I", leaf).tobytes())]
    change.devices = [(1, "v", "volume", 4 * 4096, 1, None, mapped, 0.0)]
    change.pages = [("node", 0, _counts(*node_counts)), ("data", 0, _counts(*chunk_counts))]
    change.overlays = list(overlays)
    change.settings = {"data_high_water": 4, "node_high_water": 1, "next_device_id": 2}
    meta.save(change)


def test_consistent_metadata_checks_clean(meta):
    _store(meta, node_counts=(1,), chunk_counts=(1, 1))
    report = checker.check(meta)
    assert report.clean, report.problems
    assert report.summary.startswith("1 devices, 1 nodes, 2 chunks in use")


def test_a_chain_of_overlays_checks_clean(meta):
    """The leaf maps chunk 2, an overlay of chunk 1, itself an overlay of chunk 0: each
    level is held by the one above it, not by a leaf."""
    _store(meta, (1,), (1, 1, 1), leaf=(3, 0, 0, 0), mapped=1, overlays=[(2, 1, 2), (1, 0, 1)])
    report = checker.check(meta)
    assert report.clean, report.problems


@pytest.mark.parametrize(
    "node_counts, chunk_counts, leaf, mapped, overlays, words",
    [
        ((2,), (1, 1), (1, 2, 0, 0), 2, (), "leak: node 1 has count 2 but 1 references"),
        ((1,), (1, 0), (1, 2, 0, 0), 2, (), "double reference: chunk 1"),
        ((1,), (1, 1), (1, 2, 0, 0), 5, (), "records 5 mapped chunks but maps 2"),
        ((1,), (1, 1, 0, 0), (1, 2, 0, 99), 3, (), "beyond the allocated data"),
        ((1,), (2, 1), (1, 2, 0, 0), 2, [(1, 0, 0)], "has valid-block mask 0x0"),
        ((1,), (1, 1), (1, 2, 0, 0), 2, [(1, 2, 1)], "double reference: chunk 2"),
        ((1,), (0, 2, 1), (2, 0, 0, 0), 1, [(1, 2, 1), (2, 1, 1)], "(or a cycle)"),
        ((1,), (1, 1, 1), (1, 0, 0, 0), 1, [(1, 0, 1)], "overlay chunk 1 is recorded but"),
    ],
)
def test_each_kind_of_damage_is_reported(
    meta, node_counts, chunk_counts, leaf, mapped, overlays, words
):
    _store(meta, node_counts, chunk_counts, leaf, mapped, overlays)
    problems = checker.check(meta).problems
    assert any(words in p for p in problems), problems
