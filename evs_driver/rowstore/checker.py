"""The pool's fsck: recompute every reference count from the device roots.

Reads the committed metadata only. Reports:
- dangling pointers: a device or node pointing at a missing node or past the data file;
- double references: something referenced more times than its stored count (it would be
  freed while still in use);
- leaks: a stored count higher than the references found (space that is never freed), and
  node rows that nothing reaches;
- per device: the mapped-chunk count and any mapping past the device's size;
- overlays that nothing maps, whose base is missing, whose chain of bases is deeper than
  ``MAX_DEPTH`` overlays (or a cycle), or whose valid mask is empty or full (each overlay's
  reference on its base is part of the counts).
"""

from array import array
from collections import Counter

from evs_driver.reports import CheckReport
from evs_driver.rowstore.geometry import height_for
from evs_driver.rowstore.overlays import FULL, MAX_DEPTH
from evs_driver.rowstore.spacemap import PAGE_ENTRIES


def _stored_counts(pages: dict[int, bytes]) -> dict[int, int]:
    counts = {}
    for number, blob in pages.items():
        base = number * PAGE_ENTRIES
        for index, count in enumerate(array("I", blob)):
            if count:
                counts[base + index] = count
    return counts


class _Walker:
    def __init__(self, meta, capacity_chunks: int, data_high_water: int, bits: int):
        self.meta = meta
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.limit = min(capacity_chunks, data_high_water)
        self.nodes: dict[int, tuple[int, array]] = {}
        self.node_refs: Counter = Counter()
        self.data_refs: Counter = Counter()
        self.mapped: dict[int, int] = {}
        self.problems: list[str] = []

    def visit(self, node_id: int, level: int | None, owner: str) -> None:
        """Count everything reachable from ``node_id`` once."""
        stack = [(node_id, level, owner)]
        while stack:
            node_id, level, owner = stack.pop()
            if node_id in self.nodes:
                if level is not None and self.nodes[node_id][0] != level:
                    self.problems.append(
                        f"node {node_id} is reached at level {level} from {owner} "
                        f"but is level {self.nodes[node_id][0]}"
                    )
                continue
            row = self.meta.node(node_id)
            if row is None:
                self.problems.append(f"dangling pointer: {owner} refers to missing node {node_id}")
                self.nodes[node_id] = (level if level is not None else -1, array("I"))
                continue
            node_level, body = row
            entries = array("I", body)
            self.nodes[node_id] = (node_level, entries)
            if level is not None and node_level != level:
                self.problems.append(
                    f"node {node_id} is level {node_level}, expected {level} under {owner}"
                )
            for child in entries:
                if not child:
                    continue
                if node_level:
                    self.node_refs[child] += 1
                    stack.append((child, node_level - 1, f"node {node_id}"))
                elif child - 1 >= self.limit:
                    self.problems.append(
                        f"dangling pointer: node {node_id} maps chunk {child - 1} "
                        f"beyond the allocated data ({self.limit} chunks)"
                    )
                else:
                    self.data_refs[child - 1] += 1

    def mapped_count(self, node_id: int) -> int:
        """Mapped chunks under a node (memoized: shared subtrees are counted once each)."""
        if node_id in self.mapped:
            return self.mapped[node_id]
        order, stack = [], [node_id]
        while stack:
            current = stack.pop()
            if current in self.mapped:
                continue
            order.append(current)
            level, entries = self.nodes[current]
            if level > 0:
                stack.extend(c for c in entries if c and c not in self.mapped)
        for current in reversed(order):
            level, entries = self.nodes[current]
            if level > 0:
                self.mapped[current] = sum(self.mapped.get(c, 0) for c in entries if c)
            else:
                self.mapped[current] = sum(1 for e in entries if e)
        return self.mapped[node_id]

    def mapped_beyond(self, node_id: int, level: int, base: int, chunks: int) -> bool:
        """True when anything under ``node_id`` (covering slots from ``base``) is at or past ``chunks``."""
        child_span = 1 << (self.bits * level)
        for index, entry in enumerate(self.nodes[node_id][1]):
            if not entry:
                continue
            start = base + index * child_span
            if start >= chunks:
                return True
            if (
                level
                and start + child_span > chunks
                and self.mapped_beyond(entry, level - 1, start, chunks)
            ):
                return True
        return False


def check(meta) -> CheckReport:
    """Verify the committed metadata of one pool."""
    settings = meta.settings()
    chunk_size = int(settings["chunk_size"])
    bits = int(settings["node_bits"])
    walker = _Walker(meta, int(settings["capacity_chunks"]), int(settings["data_high_water"]), bits)
    devices = meta.devices()
    for _id, name, _kind, size, root, _origin, _mapped, _created in devices:
        if root:
            walker.node_refs[root] += 1
            walker.visit(root, height_for(-(-size // chunk_size), bits) - 1, f"device {name}")
    garbage = meta.garbage()
    for node_id in garbage:
        walker.visit(node_id, None, "the garbage list")
    problems = walker.problems
    for _id, name, _kind, size, root, _origin, mapped, _created in devices:
        chunks = -(-size // chunk_size)
        actual = walker.mapped_count(root) if root else 0
        if actual != mapped:
            problems.append(f"device {name} records {mapped} mapped chunks but maps {actual}")
        if root and walker.mapped_beyond(root, height_for(chunks, bits) - 1, 0, chunks):
            problems.append(f"device {name} maps chunks past its size of {size} bytes")
    _check_overlays(meta.overlays(), walker, problems)
    _compare("node", _stored_counts(meta.pages("node")), walker.node_refs, problems, offset=1)
    _compare("chunk", _stored_counts(meta.pages("data")), walker.data_refs, problems, offset=0)
    for node_id in garbage:
        if walker.node_refs.get(node_id):
            problems.append(f"garbage node {node_id} is still referenced")
    for node_id in set(meta.node_ids()) - set(walker.nodes):
        problems.append(f"leak: node {node_id} is stored but nothing refers to it")
    summary = (
        f"{len(devices)} devices, {len(walker.nodes)} nodes, "
        f"{len(walker.data_refs)} chunks in use, {len(garbage)} nodes awaiting collection"
    )
    return CheckReport(tuple(problems), summary)


def _check_overlays(rows: dict[int, tuple[int, int]], walker: _Walker, problems: list[str]):
    # A level of a chain is held by the overlay above it, not by a leaf.
    reached = {chunk for chunk in rows if walker.data_refs.get(chunk)}
    for chunk in list(reached):
        for _ in range(MAX_DEPTH):
            chunk = rows[chunk][0]
            if chunk not in rows or chunk in reached:
                break
            reached.add(chunk)
    for chunk, (base, valid) in sorted(rows.items()):
        if chunk not in reached:
            problems.append(f"leak: overlay chunk {chunk} is recorded but nothing maps it")
        if base >= walker.limit:
            problems.append(
                f"dangling pointer: overlay chunk {chunk} has base {base} "
                f"beyond the allocated data ({walker.limit} chunks)"
            )
        elif _too_deep(rows, chunk):
            problems.append(
                f"overlay chunk {chunk} has a chain of bases deeper than {MAX_DEPTH} "
                "overlays (or a cycle)"
            )
        if not 0 < valid < FULL:
            problems.append(f"overlay chunk {chunk} has valid-block mask {valid:#x}")
        walker.data_refs[base] += 1


def _too_deep(rows: dict[int, tuple[int, int]], chunk: int) -> bool:
    """True when more than ``MAX_DEPTH`` overlays stack from ``chunk`` down (a cycle too)."""
    for _ in range(MAX_DEPTH):
        chunk = rows[chunk][0]
        if chunk not in rows:
            return False
    return True


def _compare(
    kind: str, stored: dict[int, int], found: Counter, problems: list[str], offset: int
) -> None:
    """Compare stored counts (by block) with references found (by id = block + offset)."""
    for block in set(stored) | {i - offset for i in found}:
        have, want = stored.get(block, 0), found.get(block + offset, 0)
        if have > want:
            problems.append(f"leak: {kind} {block + offset} has count {have} but {want} references")
        elif have < want:
            problems.append(
                f"double reference: {kind} {block + offset} is referenced {want} "
                f"times but counted {have}"
            )
