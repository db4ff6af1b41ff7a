"""Copy-on-write radix-tree nodes with reference counts (the engine's mapping metadata).

A node maps ``FANOUT`` consecutive slots. A leaf (level 0) holds data chunk numbers plus one
(0 means unmapped); an interior node (level >= 1) holds child node ids (0 means an empty
subtree). A node's reference count is the number of device roots and interior entries that
point at it; a data chunk's count is the number of leaf entries that point at it. So sharing
a whole tree is one increment, and a write through a shared node *shadows* it: the copy takes
one more reference on each child and the original loses one (dm-thin's persistent-data rule).

Node ids are never 0. A node whose count reaches 0 becomes garbage: its children keep their
references until the collector walks it (see ``collector.py``). Every node created, changed
or forgotten is handed to the transaction through ``changes`` and ``hand_over``, and stays in
memory until it is ``stored``.

Memory: nodes read from the metadata are cached up to a bound, the least recently used
clean ones evicted first (they read back as they are from the committed metadata). A node
changed since the last commit is never evicted: it exists nowhere else, and writing it
early would put a half-made transaction in the committed metadata. ``crowded`` tells the
write paths to commit once such nodes fill half the cache, so between requests the cache
holds at most its bound, and within one at most half of it plus what that request changes.
"""

import dataclasses
from array import array
from collections import OrderedDict

from evs_driver import exception
from evs_driver.rowstore.geometry import DEFAULT_BITS
from evs_driver.rowstore.spacemap import SpaceMap


@dataclasses.dataclass(slots=True)
class NodeChanges:
    """What one commit stores of the nodes."""

    rows: list[tuple[int, int, bytes]]  # (id, level, body) to store
    deleted: list[int]  # ids of collected nodes
    garbage: list[int]  # ids that became garbage and are still uncollected
    pages: list[tuple[int, bytes]]  # changed reference-count pages
    high_water: int


@dataclasses.dataclass(slots=True)
class HandedNodes:
    """What a commit storing outside the lock took of the nodes (see ``hand_over``)."""

    nodes: dict[int, "Node"]  # the changed nodes it stores
    deleted: set[int]
    garbage: set[int]
    pages: set[int]  # reference-count pages
    freed: int  # ids freed before it: reusable once it is stored


class Node:
    """One tree node: its level and ``FANOUT`` uint32 entries."""

    __slots__ = ("level", "entries")

    def __init__(self, level: int, entries: array):
        self.level = level
        self.entries = entries

    def is_empty(self) -> bool:
        """True when no entry is set."""
        return not self.entries.tobytes().strip(b"\0")

    def body(self) -> bytes:
        """The entries as the metadata stores them."""
        return self.entries.tobytes()


NODE_OVERHEAD = 200  # bytes a cached node costs beyond its entries (objects, cache slot)
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


def cache_nodes(cache_bytes: int, bits: int) -> int:
    """How many nodes of 2**bits entries fit in ``cache_bytes`` (at least one)."""
    return max(1, cache_bytes // (4 * (1 << bits) + NODE_OVERHEAD))


class NodeStore:
    """Nodes in memory over the metadata store, with reference counts and dirty tracking."""

    def __init__(
        self,
        loader,
        refs: SpaceMap,
        data_refs: SpaceMap,
        garbage: set[int],
        bits: int = DEFAULT_BITS,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        """``loader(id) -> (level, body) | None`` reads a committed node; nodes have 2**bits
        slots; ``cache_bytes`` bounds the memory of the nodes kept."""
        self.bits = bits
        self.fanout = 1 << bits
        self.mask = self.fanout - 1
        self._empty = bytes(4 * self.fanout)
        self._loader = loader
        self._refs = refs
        self._data_refs = data_refs
        self._garbage = garbage
        #: Nodes the cache holds at most (more only while changed ones alone exceed it).
        self.cache_limit = cache_nodes(cache_bytes, bits)
        #: The most nodes it has held at once (what an operator sizing the bound wants).
        self.cache_peak = 0
        self._clean: OrderedDict[int, Node] = OrderedDict()  # least recently used first
        self._dirty: dict[int, Node] = {}  # changed since the last commit: never evicted
        #: Handed to a commit that is storing them: never evicted either, as the stored
        #: rows are not there yet to read back.
        self._storing: dict[int, Node] = {}
        self._deleted: set[int] = set()
        self._new_garbage: set[int] = set()

    @property
    def cached(self) -> int:
        """Nodes in memory now."""
        return len(self._clean) + len(self._dirty) + len(self._storing)

    def crowded(self) -> bool:
        """True when changed nodes fill half the cache: time to commit, so they can go."""
        return 2 * len(self._dirty) >= self.cache_limit

    def get(self, node_id: int) -> Node:
        """The node ``node_id`` (read from the metadata when it is not in memory)."""
        node = self._dirty.get(node_id)
        if node is None:
            node = self._storing.get(node_id)
        if node is not None:
            return node
        node = self._clean.get(node_id)
        if node is not None:
            self._clean.move_to_end(node_id)
            return node
        row = self._loader(node_id)
        if row is None:
            raise exception.PoolCorrupt(
                path="metadata", reason=f"node {node_id} is referenced but missing"
            )
        level, body = row
        node = self._clean[node_id] = Node(level, array("I", body))
        self._trim()
        return node

    def _trim(self) -> None:
        """Evict the least recently used clean nodes beyond the bound."""
        clean, limit = self._clean, self.cache_limit - len(self._dirty) - len(self._storing)
        while len(clean) > limit and clean:
            clean.popitem(last=False)
        self.cache_peak = max(self.cache_peak, self.cached)

    def new(self, level: int, entries: array | None = None) -> int:
        """Create a node with one reference (the caller's) and return its id."""
        node_id = self._refs.allocate() + 1
        self._refs.inc(node_id - 1)
        self._dirty[node_id] = Node(
            level, entries if entries is not None else array("I", self._empty)
        )
        self._clean.pop(node_id, None)
        self._deleted.discard(node_id)
        self._trim()
        return node_id

    def count(self, node_id: int) -> int:
        """References to ``node_id`` (device roots and interior entries)."""
        return self._refs.get(node_id - 1)

    def inc(self, node_id: int) -> None:
        """One more reference to ``node_id``."""
        self._refs.inc(node_id - 1)

    def drop(self, node_id: int) -> None:
        """Drop one reference; at zero the node becomes garbage for the collector."""
        if not self._refs.dec(node_id - 1):
            self._garbage.add(node_id)
            self._new_garbage.add(node_id)

    def mark_dirty(self, node_id: int, node: Node | None = None) -> None:
        """Record that the entries of ``node_id`` (which is unshared) changed.

        ``node``: the object the caller changed, when it may have been evicted since it
        was handed out (it is then the only up-to-date copy).
        """
        if node_id in self._dirty:
            return
        if node is None:
            node = self.get(node_id)
        self._clean.pop(node_id, None)
        self._dirty[node_id] = node

    def take_child_refs(self, node: Node) -> None:
        """Add one reference to every child of ``node`` (it has just been copied)."""
        refs = self._refs if node.level else self._data_refs
        refs.share(entry - 1 for entry in node.entries if entry)

    def writable(self, node_id: int) -> int:
        """Return a node id safe to modify: ``node_id`` itself if unshared, else a shadow copy."""
        if self.count(node_id) == 1:
            self.mark_dirty(node_id)
            return node_id
        original = self.get(node_id)
        copy_id = self.new(original.level, array("I", original.entries))
        self.take_child_refs(original)
        self.drop(node_id)
        return copy_id

    # -- garbage, for the collector ---------------------------------------------------------
    @property
    def garbage_count(self) -> int:
        """Nodes whose count reached 0 and that the collector has not walked yet."""
        return len(self._garbage)

    def next_garbage(self) -> int | None:
        """Some uncollected garbage node, or None."""
        return next(iter(self._garbage), None)

    def free(self, node_id: int) -> None:
        """Forget a collected node (its count is already 0 and its children dropped)."""
        self._clean.pop(node_id, None)
        self._dirty.pop(node_id, None)
        self._storing.pop(node_id, None)
        self._deleted.add(node_id)
        self._garbage.discard(node_id)
        self._refs.release(node_id - 1)

    # -- the transaction's side -----------------------------------------------------------
    def pending(self) -> bool:
        """True when a change awaits a commit."""
        return bool(self._dirty or self._deleted or self._new_garbage or self._refs.pending())

    def changes(self) -> NodeChanges:
        """Everything changed since the last commit."""
        return NodeChanges(
            rows=[(i, node.level, node.body()) for i, node in self._dirty.items()],
            deleted=list(self._deleted),
            garbage=[i for i in self._new_garbage if i in self._garbage],
            pages=self._refs.changed_pages(),
            high_water=self._refs.high_water,
        )

    def hand_over(self) -> "HandedNodes":
        """Take what ``changes`` returned for a commit that stores it outside the lock.

        The nodes stay in memory as they are now; one changed meanwhile is changed again
        for the next commit, and ids freed meanwhile wait for that one."""
        handed = HandedNodes(
            dict(self._dirty),
            self._deleted,
            self._new_garbage,
            self._refs.hand_over(),
            self._refs.pending_count,
        )
        self._storing.update(self._dirty)
        self._dirty = {}
        self._deleted, self._new_garbage = set(), set()
        return handed

    def stored(self, handed: "HandedNodes") -> None:
        """The commit of ``handed`` is stored: its nodes may be evicted, and ids freed
        before it may be reused."""
        for node_id in handed.nodes:
            node = self._storing.pop(node_id, None)
            if node is not None and node_id not in self._dirty:
                self._clean[node_id] = node  # now as committed: evictable
        self._trim()
        self._refs.recycle(handed.freed)

    def take_back(self, handed: "HandedNodes") -> None:
        """The commit of ``handed`` failed: what it held is changed again."""
        for node_id in handed.nodes:
            node = self._storing.pop(node_id, None)
            if node is not None:
                self._dirty.setdefault(node_id, node)
        self._deleted |= handed.deleted
        self._new_garbage |= handed.garbage
        self._refs.take_back(handed.pages)

    def discard_changes(self, refs: SpaceMap, garbage: set[int]) -> None:
        """Forget every change since the last commit, given the committed counts and garbage.

        Valid only when no node changed before the last commit is still referenced by a
        writer (the transaction calls it under the pool lock, with nothing pending before).
        """
        assert not self._storing, "changes discarded while a commit stores them"
        self._dirty.clear()  # the committed versions are read back when needed
        self._deleted.clear()
        self._new_garbage.clear()
        self._garbage.clear()
        self._garbage.update(garbage)
        self._refs = refs
