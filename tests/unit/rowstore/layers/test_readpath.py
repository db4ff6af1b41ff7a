"""Where a read of an overlay takes each byte from (``readpath._sources``)."""

import random

import pytest

from evs_driver.rowstore import overlays
from evs_driver.rowstore.readpath import _sources

BLOCK = 256


def _holder(levels, position):
    """The first level (top first) whose valid mask has the block of ``position``."""
    return next(chunk for chunk, valid in levels if valid >> (position // BLOCK) & 1)


@pytest.mark.parametrize("seed", range(20))
def test_every_byte_comes_from_the_first_level_holding_its_block_and_once(seed):
    chooser = random.Random(seed)
    for _ in range(50):
        depth = chooser.randrange(1, overlays.MAX_DEPTH + 1)
        levels = [(10 + n, chooser.randrange(1, overlays.FULL)) for n in range(depth)]
        levels.append((99, overlays.FULL))  # the plain chunk at the bottom
        offset = chooser.randrange(overlays.BLOCKS * BLOCK)
        length = chooser.randrange(1, overlays.BLOCKS * BLOCK - offset + 1)
        taken = {}
        for start, end, chunk in _sources(BLOCK, levels, offset, length):
            assert offset <= start < end <= offset + length
            for position in range(start, end):
                assert position not in taken
                taken[position] = chunk
        assert taken == {p: _holder(levels, p) for p in range(offset, offset + length)}


def test_a_run_of_blocks_is_one_read():
    levels = [(1, 0b0000000011110000), (2, overlays.FULL)]
    assert list(_sources(BLOCK, levels, 0, 16 * BLOCK)) == [
        (4 * BLOCK, 8 * BLOCK, 1),
        (0, 4 * BLOCK, 2),
        (8 * BLOCK, 16 * BLOCK, 2),
    ]
