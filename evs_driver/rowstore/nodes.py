"""Copy-on-write radix-tree nodes with reference counts (the engine's mapping metadata).

A node maps ``FANOUT`` consecutive slots. A leaf (level 0) holds data chunk numbers plus one
(0 means unmapped); an interior node (level >= 1) holds child node ids (0 means an empty
subtree). A node's reference count is the number of device roots and interior entries that
point at it; a data chunk's count is the number of leaf entries that point at it. So sharing
a whole tree is one increment, and a write through a shared node *shadows* it: the copy takes
one more reference on each child and the original loses one (dm-thin's persistent-data rule).

Node ids are never 0. A node whose count reaches 0 becomes garbage: its children keep their
references until the collector walks it (see ``collector.py``).
"""

from array import array

DEFAULT_BITS = 10  # 1024 entries: a 4 KiB node


def height_for(chunks: int, bits: int = DEFAULT_BITS) -> int:
    """Number of tree levels needed to address ``chunks`` slots (at least 1)."""
    height = 1
    while 1 << (bits * height) < chunks:
        height += 1
    return height


class Node:
    """One tree node: its level and ``FANOUT`` uint32 entries."""

    __slots__ = ("level", "entries")

    def __init__(self, level: int, entries: array):
        self.level = level
        self.entries = entries

    def is_empty(self) -> bool:
        return not self.entries.tobytes().strip(b"\0")

    def body(self) -> bytes:
        return self.entries.tobytes()


class NodeStore:
    """Nodes in memory over the metadata store, with reference counts and dirty tracking."""

    def __init__(self, loader, refs, data_refs, garbage: set[int], bits: int = DEFAULT_BITS):
        """``loader(id) -> (level, body) | None`` reads a committed node; nodes have 2**bits slots."""
        self.bits = bits
        self.fanout = 1 << bits
        self.mask = self.fanout - 1
        self._empty = bytes(4 * self.fanout)
        self._loader = loader
        self.refs = refs
        self.data_refs = data_refs
        self.garbage = garbage
        self.cache: dict[int, Node] = {}
        self.dirty: set[int] = set()
        self.deleted: set[int] = set()
        self.new_garbage: set[int] = set()

    def get(self, node_id: int) -> Node:
        node = self.cache.get(node_id)
        if node is None:
            row = self._loader(node_id)
            if row is None:
                from evs_driver import exception

                raise exception.PoolCorrupt(
                    path="metadata", reason=f"node {node_id} is referenced but missing"
                )
            level, body = row
            node = self.cache[node_id] = Node(level, array("I", body))
        return node

    def new(self, level: int, entries: array | None = None) -> int:
        """Create a node with one reference (the caller's) and return its id."""
        node_id = self.refs.allocate() + 1
        self.refs.inc(node_id - 1)
        self.cache[node_id] = Node(
            level, entries if entries is not None else array("I", self._empty)
        )
        self.dirty.add(node_id)
        self.deleted.discard(node_id)
        return node_id

    def count(self, node_id: int) -> int:
        return self.refs.get(node_id - 1)

    def inc(self, node_id: int) -> None:
        self.refs.inc(node_id - 1)

    def drop(self, node_id: int) -> None:
        """Drop one reference; at zero the node becomes garbage for the collector."""
        if not self.refs.dec(node_id - 1):
            self.garbage.add(node_id)
            self.new_garbage.add(node_id)

    def take_child_refs(self, node: Node) -> None:
        """Add one reference to every child of ``node`` (it has just been copied)."""
        if node.level:
            for child in node.entries:
                if child:
                    self.refs.inc(child - 1)
        else:
            for mapped in node.entries:
                if mapped:
                    self.data_refs.inc(mapped - 1)

    def writable(self, node_id: int) -> int:
        """Return a node id safe to modify: ``node_id`` itself if unshared, else a shadow copy."""
        if self.count(node_id) == 1:
            self.dirty.add(node_id)
            return node_id
        original = self.get(node_id)
        copy_id = self.new(original.level, array("I", original.entries))
        self.take_child_refs(original)
        self.drop(node_id)
        return copy_id

    def free(self, node_id: int) -> None:
        """Forget a collected node (its count is already 0 and its children dropped)."""
        self.cache.pop(node_id, None)
        self.dirty.discard(node_id)
        self.deleted.add(node_id)
        self.garbage.discard(node_id)
        self.refs.release(node_id - 1)
