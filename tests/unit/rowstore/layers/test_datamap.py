"""The data map alone: chunk counts, overlays holding their bases, reuse after commit."""

import pytest

from evs_driver.rowstore import overlays
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.overlays import Overlays
from evs_driver.rowstore.spacemap import SpaceMap

BLOCK = 256


@pytest.fixture
def datamap():
    return DataMap(SpaceMap("data", {}, 0, 16), Overlays({}), BLOCK)


def _mapped(datamap) -> int:
    chunk = datamap.allocate()
    datamap.reference(chunk)
    return chunk


def test_a_chunk_is_freed_at_zero_and_reused_only_after_the_commit(datamap):
    chunk = _mapped(datamap)
    datamap.reference(chunk)  # shared
    datamap.drop(chunk)
    assert datamap.count(chunk) == 1 and datamap.freed() == []
    datamap.drop(chunk)
    assert datamap.freed() == [chunk]
    assert datamap.allocate() != chunk
    datamap.reuse_freed()
    assert datamap.allocate() == chunk


def test_a_redirected_partial_write_makes_an_overlay_that_holds_its_base(datamap):
    base = _mapped(datamap)
    datamap.reference(base)  # a snapshot shares it
    valid = datamap.redirect_valid(base + 1, BLOCK + 1, 10)
    assert valid == 0b10
    overlay = datamap.allocate()
    datamap.redirected(overlay, base + 1, valid)
    assert datamap.overlay(overlay) == (base, 0b10)
    assert (datamap.count(base), datamap.count(overlay)) == (2, 1)
    datamap.drop(base)  # the snapshot goes: the overlay keeps its base
    assert datamap.count(base) == 1
    datamap.drop(overlay)  # the overlay goes, and with it the base
    assert datamap.count(base) == 0 and datamap.overlay(overlay) is None
    assert sorted(datamap.freed()) == sorted([base, overlay])


def test_redirecting_an_overlay_makes_an_overlay_of_the_same_base(datamap):
    base = _mapped(datamap)
    first = datamap.allocate()
    datamap.redirected(first, base + 1, 0b1)
    datamap.reference(first)  # shared again
    valid = datamap.redirect_valid(first + 1, 2 * BLOCK, 1)
    second = datamap.allocate()
    datamap.redirected(second, first + 1, valid)
    assert datamap.overlay(second) == (base, 0b101)
    assert datamap.count(base) == 2


def test_an_overlay_filled_to_every_block_becomes_a_plain_chunk(datamap):
    base = _mapped(datamap)
    overlay = datamap.allocate()
    datamap.redirected(overlay, base + 1, 0b1)
    assert datamap.new_valid(overlay + 1, 0, BLOCK) == 0
    datamap.extend_overlay(overlay, overlays.FULL)
    assert datamap.overlay(overlay) is None
    assert datamap.count(base) == 0


def test_in_place_writes_and_exclusive_space(datamap):
    chunk = _mapped(datamap)
    assert datamap.new_valid(chunk + 1, 0, 10) == 0  # unshared plain chunk: in place
    assert datamap.new_valid(0, 0, 10) is None  # unmapped
    assert datamap.exclusive_chunks(chunk + 1) == 1
    overlay = datamap.allocate()
    datamap.redirected(overlay, chunk + 1, 0b1)
    assert datamap.exclusive_chunks(overlay + 1) == 2  # with the base only it holds
    datamap.reference(overlay)
    assert datamap.new_valid(overlay + 1, 0, 10) is None  # shared
    assert datamap.exclusive_chunks(overlay + 1) == 0


def test_changes_are_handed_over_until_committed(datamap):
    base = _mapped(datamap)
    overlay = datamap.allocate()
    datamap.redirected(overlay, base + 1, 0b1)
    pages, stored, forgotten = datamap.changes()
    assert pages and stored == [(overlay, base, 0b1)] and forgotten == []
    datamap.committed()
    assert not datamap.pending()
    datamap.drop(overlay)
    assert datamap.changes()[2] == [overlay]
