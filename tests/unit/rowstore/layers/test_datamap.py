"""The data map alone: chunk counts, overlays holding their bases, reuse after commit."""

import pytest

from evs_driver import exception
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
    datamap.reuse_freed(1)
    assert datamap.allocate() == chunk


def test_a_redirected_partial_write_makes_an_overlay_that_holds_its_base(datamap):
    base = _mapped(datamap)
    datamap.reference(base)  # a snapshot shares it
    assert datamap.redirect_valid(base + 1, BLOCK + 1, 10) == 0b10
    overlay = datamap.allocate()
    datamap.redirected(overlay, base + 1, 0b10)
    assert datamap.overlay(overlay) == (base, 0b10)
    assert (datamap.count(base), datamap.count(overlay)) == (2, 1)
    datamap.drop(base)  # the snapshot goes: the overlay keeps its base
    assert datamap.count(base) == 1
    datamap.drop(overlay)  # the overlay goes, and with it the base
    assert datamap.count(base) == 0 and datamap.overlay(overlay) is None
    assert sorted(datamap.freed()) == sorted([base, overlay])


def _stack(datamap, base: int, depth: int) -> list[int]:
    """Overlays of ``base`` ``depth`` deep, block ``n`` written at level ``n``, each shared
    by a snapshot when the next is made (as snapshot-then-write rounds leave them)."""
    chain, below = [], base
    for level in range(depth):
        valid = datamap.redirect_valid(below + 1, level * BLOCK, 1)
        assert valid == 1 << level
        overlay = datamap.allocate()
        datamap.redirected(overlay, below + 1, valid)
        datamap.reference(overlay)  # the next round's snapshot shares it
        chain.append(overlay)
        below = overlay
    return chain


def test_redirecting_an_overlay_stacks_an_overlay_on_it(datamap):
    base = _mapped(datamap)
    first, second = _stack(datamap, base, 2)
    assert datamap.overlay(second) == (first, 0b10)
    assert datamap.chain(second) == [(second, 0b10), (first, 0b1), (base, overlays.FULL)]
    # Each level keeps the one below: the snapshots go, the chain stays for the volume.
    assert datamap.count(base) == 1 and datamap.count(first) == 2
    datamap.drop(first)
    assert datamap.count(first) == 1
    assert datamap.exclusive_chunks(second + 1) == 0  # a snapshot still shares second
    datamap.drop(second)
    assert datamap.exclusive_chunks(second + 1) == 3
    datamap.drop(second)  # the last reference: the whole chain goes
    assert sorted(datamap.freed()) == sorted([base, first, second])


def test_a_redirect_at_the_deepest_chain_makes_a_plain_chunk(datamap):
    base = _mapped(datamap)
    chain = _stack(datamap, base, overlays.MAX_DEPTH)
    assert datamap.redirect_valid(chain[-1] + 1, overlays.MAX_DEPTH * BLOCK, 1) == 0
    plain = datamap.allocate()
    datamap.redirected(plain, chain[-1] + 1, 0)
    assert datamap.chain(plain) == [(plain, overlays.FULL)]
    assert datamap.count(chain[-1]) == 1  # the snapshot's: the leaf maps the plain one
    for level in chain:  # the snapshots go: so does the chain they alone held
        datamap.drop(level)
    assert sorted(datamap.freed()) == sorted([base, *chain])


def test_a_chain_deeper_than_the_limit_is_damage(datamap):
    base = _mapped(datamap)
    chain = _stack(datamap, base, overlays.MAX_DEPTH)
    top = datamap.allocate()
    datamap.reference(top)
    datamap._overlays.set(top, chain[-1], 0b1)  # what only damaged metadata holds
    with pytest.raises(exception.PoolCorrupt, match="deeper than"):
        datamap.chain(top)


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
    datamap.hand_over()
    assert not datamap.pending()
    datamap.drop(overlay)
    assert datamap.changes()[2] == [overlay]
