"""Lookups, path shadowing and exclusivity in a device's radix tree (``nodes.py`` has the rules).

Invariant: a leaf is handed out for writing in place (``exclusive_leaf``) only when every
node from the root down to it has a count of 1, so nothing else can see the change.
"""

from collections.abc import Iterator

from evs_driver.rowstore.nodes import Node, NodeStore


class WritableLeaf:
    """A leaf reached through unshared nodes only: safe to modify, then ``mark_dirty``."""

    __slots__ = ("node_id", "nodes", "node", "entries")

    def __init__(self, nodes: NodeStore, node_id: int):
        self.nodes, self.node_id = nodes, node_id
        self.node = nodes.get(node_id)
        self.entries = self.node.entries

    def mark_dirty(self) -> None:
        """Record the change for the next commit (call after every change).

        A commit since the leaf was handed out may have let the cache evict it; this
        object, changed, is then the leaf, so it goes back in."""
        self.nodes.mark_dirty(self.node_id, self.node)


def find_leaf(nodes: NodeStore, root: int, height: int, vchunk: int) -> Node | None:
    """The leaf covering ``vchunk``, or None when that part of the tree is empty."""
    node_id, bits, mask = root, nodes.bits, nodes.mask
    for level in range(height - 1, 0, -1):
        if not node_id:
            return None
        node_id = nodes.get(node_id).entries[(vchunk >> (bits * level)) & mask]
    return nodes.get(node_id) if node_id else None


def leaf_spans(nodes: NodeStore, root: int, height: int, first: int, count: int) -> Iterator:
    """``(count, entries)`` for each leaf's share of ``count`` slots from ``first``: the
    leaf's entries for them, or None where the tree has no leaf (all unmapped)."""
    vchunk, end, mask = first, first + count, nodes.mask
    while vchunk < end:
        take = min(end, (vchunk | mask) + 1) - vchunk
        leaf = find_leaf(nodes, root, height, vchunk) if root else None
        index = vchunk & mask
        yield take, None if leaf is None else leaf.entries[index : index + take]
        vchunk += take


def lookup_run(nodes: NodeStore, root: int, height: int, first: int, count: int) -> list[int]:
    """Leaf entries (chunk + 1, or 0 when unmapped) for ``count`` slots from ``first``."""
    if first >> nodes.bits == (first + count - 1) >> nodes.bits:  # one leaf: most reads
        leaf = find_leaf(nodes, root, height, first) if root else None
        index = first & nodes.mask
        return [0] * count if leaf is None else leaf.entries[index : index + count].tolist()
    entries: list[int] = []
    for take, found in leaf_spans(nodes, root, height, first, count):
        entries.extend([0] * take if found is None else found)
    return entries


def writable_path(nodes: NodeStore, root: int, height: int, vchunk: int) -> list[int]:
    """Shadow or create every node from the root to ``vchunk``'s leaf; return their ids.

    The first id is the (possibly new) root, which the caller must store on the device.
    """
    root = nodes.writable(root) if root else nodes.new(height - 1)
    path = [root]
    node_id = root
    for level in range(height - 1, 0, -1):
        node = nodes.get(node_id)
        index = (vchunk >> (nodes.bits * level)) & nodes.mask
        child = node.entries[index]
        child = nodes.writable(child) if child else nodes.new(level - 1)
        node.entries[index] = child
        path.append(child)
        node_id = child
    return path


def prune(nodes: NodeStore, path: list[int], vchunk: int) -> int:
    """Drop empty nodes at the bottom of a writable path; return the root (0 if it emptied)."""
    for depth in range(len(path) - 1, 0, -1):
        if not nodes.get(path[depth]).is_empty():
            return path[0]
        level = len(path) - depth
        parent = nodes.get(path[depth - 1])
        parent.entries[(vchunk >> (nodes.bits * level)) & nodes.mask] = 0
        nodes.drop(path[depth])
    if nodes.get(path[0]).is_empty():
        nodes.drop(path[0])
        return 0
    return path[0]


def grow(nodes: NodeStore, root: int, height: int, new_height: int) -> int:
    """Add levels above ``root`` so the tree addresses ``new_height`` levels; same mappings."""
    for level in range(height, new_height):
        if root:
            parent = nodes.new(level)
            nodes.get(parent).entries[0] = root
            root = parent
    return root


def exclusive_leaf(nodes: NodeStore, root: int, height: int, vchunk: int) -> WritableLeaf | None:
    """The leaf for ``vchunk`` if no node from the root down to it is shared, else None."""
    node_id = root
    if not node_id or nodes.count(node_id) != 1:
        return None
    for level in range(height - 1, 0, -1):
        node_id = nodes.get(node_id).entries[(vchunk >> (nodes.bits * level)) & nodes.mask]
        if not node_id or nodes.count(node_id) != 1:
            return None
    return WritableLeaf(nodes, node_id)


def exclusive_entries(nodes: NodeStore, root: int) -> Iterator[int]:
    """Leaf entries (chunk + 1) reached from ``root`` through unshared nodes only."""
    stack = [root] if root and nodes.count(root) == 1 else []
    while stack:
        node = nodes.get(stack.pop())
        if node.level:
            stack.extend(c for c in node.entries if c and nodes.count(c) == 1)
        else:
            yield from (entry for entry in node.entries if entry)
