"""The space map alone: reference counts, lowest-first allocation, reuse only after recycle."""

import pytest

from evs_driver import exception
from evs_driver.rowstore.spacemap import PAGE_ENTRIES, SpaceMap


def test_allocation_takes_the_lowest_free_block_then_grows_the_high_water():
    space = SpaceMap("s", {}, 0, None)
    first, second = space.allocate(), space.allocate()
    assert (first, second, space.high_water) == (0, 1, 2)
    space.inc(first)
    space.release(second)  # a reservation never used
    space.recycle()
    assert space.allocate() == 1


def test_a_block_freed_is_not_reused_before_recycle():
    space = SpaceMap("s", {}, 0, None)
    block = space.allocate()
    space.inc(block)
    assert space.dec(block) == 0
    space.release(block)
    assert space.take_pending() == [block]
    assert space.allocate() != block  # the commit that freed it has not happened
    assert space.recycle() == [block]
    assert space.allocate() == block


def test_counts_used_and_the_floor_at_zero():
    space = SpaceMap("pool p", {}, 0, None)
    block = space.allocate()
    space.inc(block)
    space.inc(block, by=2)
    assert (space.get(block), space.used) == (3, 1)
    for expected in (2, 1, 0):
        assert space.dec(block) == expected
    assert space.used == 0
    with pytest.raises(exception.PoolCorrupt, match="would go below zero"):
        space.dec(block)


def test_sharing_adds_a_reference_to_each_block_and_refuses_an_unreferenced_one():
    space = SpaceMap("pool p", {}, 0, None)
    blocks = [space.allocate() for _ in range(PAGE_ENTRIES + 2)]
    for block in blocks:
        space.inc(block)
    space.share(blocks[PAGE_ENTRIES - 1 :])  # across a page boundary
    assert [space.get(b) for b in blocks[PAGE_ENTRIES - 2 :]] == [1, 2, 2, 2]
    assert space.used == PAGE_ENTRIES + 2
    with pytest.raises(exception.PoolCorrupt, match="shared but has no reference"):
        space.share([PAGE_ENTRIES + 5])


def test_a_full_space_raises_pool_full():
    space = SpaceMap("pool p", {}, 0, 2)
    space.allocate(), space.allocate()
    with pytest.raises(exception.PoolFull) as raised:
        space.allocate()
    assert raised.value.code == 28


def test_pages_round_trip_and_busy_blocks_stay_unallocated():
    space = SpaceMap("s", {}, 0, None)
    for _ in range(PAGE_ENTRIES + 3):
        space.inc(space.allocate())
    for block in (5, PAGE_ENTRIES + 1):
        space.dec(block)
    pages = dict(space.changed_pages())
    assert sorted(pages) == [0, 1] and space.pending()
    space.hand_over()
    assert not space.pending() and space.changed_pages() == []
    again = SpaceMap("s", pages, PAGE_ENTRIES + 3, None, busy={5})
    assert again.used == PAGE_ENTRIES + 1
    assert again.free_blocks() == [PAGE_ENTRIES + 1]
    assert again.allocate() == PAGE_ENTRIES + 1
