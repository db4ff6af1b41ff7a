"""Reference counts for a space of numbered blocks (data chunks or metadata nodes).

Invariants kept here:
- a block is free when its count is 0 and it is neither reserved nor awaiting recycle;
- a block whose count drops to 0 is not handed out again until ``recycle()`` is called,
  which the pool does only after the transaction that freed it has committed (so a crash
  can never leave committed metadata pointing at a block someone else has overwritten);
- blocks at or above the high-water mark have never been allocated in committed state.
"""

import heapq
from array import array

from evs_driver import exception

PAGE_ENTRIES = 4096
_ZERO_PAGE = bytes(4 * PAGE_ENTRIES)


class SpaceMap:
    """Paged uint32 reference counts with allocation from the lowest free block."""

    def __init__(
        self,
        name: str,
        pages: dict[int, bytes],
        high_water: int,
        limit: int | None,
        busy: set[int] = frozenset(),
    ):
        """``busy``: blocks whose count is 0 but which are not free (e.g. uncollected nodes)."""
        self.name = name
        self.limit = limit
        self.high_water = high_water
        self._pages: dict[int, array] = {}
        for number, blob in pages.items():
            self._pages[number] = array("I", blob)
        self._dirty_pages: set[int] = set()
        self.used = 0
        self._free: list[int] = self._scan_free(busy)
        self._reserved: set[int] = set()
        self._pending: list[int] = []

    # -- scanning -------------------------------------------------------------------
    def _scan_free(self, busy) -> list[int]:
        """Blocks below the high-water mark with a zero count, ascending (a valid heap)."""
        free = []
        for number in range((self.high_water + PAGE_ENTRIES - 1) // PAGE_ENTRIES):
            base = number * PAGE_ENTRIES
            end = min(PAGE_ENTRIES, self.high_water - base)
            page = self._pages.get(number)
            if page is None:
                free.extend(range(base, base + end))
                continue
            raw = page.tobytes()
            zeros = 0
            position = raw.find(b"\0\0\0\0")
            while position != -1:
                if position % 4:
                    position = raw.find(b"\0\0\0\0", position + 4 - position % 4)
                    continue
                index = position // 4
                zeros += 1
                if index < end:
                    free.append(base + index)
                position = raw.find(b"\0\0\0\0", position + 4)
            self.used += PAGE_ENTRIES - zeros
        return [block for block in free if block not in busy] if busy else free

    # -- counts ---------------------------------------------------------------------
    def get(self, block: int) -> int:
        """The reference count of ``block``."""
        page = self._pages.get(block // PAGE_ENTRIES)
        return page[block % PAGE_ENTRIES] if page is not None else 0

    def _page_for_update(self, block: int) -> array:
        number = block // PAGE_ENTRIES
        page = self._pages.get(number)
        if page is None:
            page = self._pages[number] = array("I", _ZERO_PAGE)
        self._dirty_pages.add(number)
        return page

    def inc(self, block: int, by: int = 1) -> None:
        """Add references; a reserved block becomes owned by its first reference."""
        page = self._page_for_update(block)
        index = block % PAGE_ENTRIES
        if not page[index]:
            self.used += 1
            self._reserved.discard(block)
        page[index] += by

    def share(self, blocks) -> None:
        """One more reference to each of ``blocks``, all already referenced: the children
        of a copied node (a leaf's 1,024 at a time, so one loop, not a call each)."""
        pages, dirty = self._pages, self._dirty_pages
        number, page = -1, None
        for block in blocks:
            if block // PAGE_ENTRIES != number:
                number = block // PAGE_ENTRIES
                page = pages.get(number)
                dirty.add(number)
            count = page[block % PAGE_ENTRIES] if page is not None else 0
            if not count:
                raise exception.PoolCorrupt(
                    path=self.name, reason=f"block {block} is shared but has no reference"
                )
            page[block % PAGE_ENTRIES] = count + 1

    def dec(self, block: int) -> int:
        """Drop one reference and return the new count (the caller decides what 0 means)."""
        page = self._page_for_update(block)
        index = block % PAGE_ENTRIES
        count = page[index]
        if not count:
            raise exception.PoolCorrupt(
                path=self.name, reason=f"reference count of block {block} would go below zero"
            )
        page[index] = count - 1
        if count == 1:
            self.used -= 1
        return count - 1

    # -- allocation -----------------------------------------------------------------
    def allocate(self) -> int:
        """Reserve a free block; it is owned once ``inc`` is called, or handed back by ``release``."""
        if self._free:
            block = heapq.heappop(self._free)
        else:
            if self.limit is not None and self.high_water >= self.limit:
                raise exception.PoolFull(
                    pool=self.name,
                    detail=f"{self.used} of {self.limit} blocks in use, "
                    f"{len(self._pending)} awaiting release",
                )
            block = self.high_water
            self.high_water += 1
        self._reserved.add(block)
        return block

    def release(self, block: int) -> None:
        """Queue a block whose count is 0 (or an unused reservation) for reuse after commit."""
        self._reserved.discard(block)
        self._pending.append(block)

    def recycle(self, count: int | None = None) -> list[int]:
        """Make blocks released before the last commit allocatable (the first ``count`` of
        them: those a commit still storing saw); return them."""
        count = len(self._pending) if count is None else count
        pending, self._pending = self._pending[:count], self._pending[count:]
        for block in pending:
            heapq.heappush(self._free, block)
        return pending

    @property
    def pending_count(self) -> int:
        """How many blocks ``recycle`` would free."""
        return len(self._pending)

    def take_pending(self) -> list[int]:
        """The blocks ``recycle`` would free, without freeing them."""
        return list(self._pending)

    def free_blocks(self) -> list[int]:
        """Every block that can be allocated now (below the high-water mark)."""
        return list(self._free)

    # -- the transaction's side -----------------------------------------------------------
    def pending(self) -> bool:
        """True when a count changed since the last commit."""
        return bool(self._dirty_pages)

    def changed_pages(self) -> list[tuple[int, bytes]]:
        """``(page number, counts)`` of every page changed since the last commit."""
        return [(number, self._pages[number].tobytes()) for number in self._dirty_pages]

    def hand_over(self) -> set[int]:
        """Take the changed pages' numbers for a commit that stores them outside the lock;
        pages changed meanwhile are changed again for the next one."""
        pages, self._dirty_pages = self._dirty_pages, set()
        return pages

    def take_back(self, pages: set[int]) -> None:
        """A commit of ``hand_over``'s pages failed: they are changed again."""
        self._dirty_pages |= pages
