"""What a volume and its snapshots may hold after a crash, from the acknowledged operations.

The kill -9 test and the power-cut test replay the operation stream of
``crash_workload`` up to the last acknowledged operation: a flush or control operation
that returned (and a write with FUA, for its block) is durable; a write after the last
durable point, or the one in flight, may or may not have reached the disk.
"""

from tests.functional import crash_workload as workload


class Replay:
    """What the volume ``v`` and the snapshots must hold after ``acked`` of ``ops`` returned."""

    def __init__(self, ops: list, acked: int, start_blocks: list, start_snapshots: dict):
        self.ops = ops
        self.blocks = list(start_blocks)  # content at the last durable point
        self.snapshots = dict(start_snapshots)
        self.later: list[set] = [set() for _ in range(workload.BLOCKS)]
        current = list(start_blocks)
        for kind, argument in self.ops[: acked + 1]:
            current = self._apply(kind, argument, current)
        self.current = current
        self.in_flight = self.ops[acked + 1] if acked + 1 < len(self.ops) else (None, None)
        if self.in_flight[0] in ("write", "fua"):
            block, tag = self.in_flight[1]
            self.later[block].add(workload.record(block, tag))

    def _apply(self, kind, argument, current):
        if kind in ("write", "fua"):
            block, tag = argument
            current[block] = workload.record(block, tag)
            if kind == "fua":  # durable on its own, nothing else is
                self.blocks[block] = current[block]
                self.later[block] = set()
            else:
                self.later[block].add(current[block])
        elif kind == "discard":
            current[argument] = bytes(workload.CHUNK)
            self.later[argument].add(current[argument])
        else:
            if kind == "snapshot":
                self.snapshots[argument] = list(current)
            elif kind == "revert":
                current = list(self.snapshots[argument])
            elif kind == "delete":
                del self.snapshots[argument]
            self._durable(current)
        if kind == "flush":
            self._durable(current)
        return current

    def _durable(self, current):
        self.blocks = list(current)
        self.later = [set() for _ in range(workload.BLOCKS)]

    def verify(self, names: set, read, optional: set = frozenset()) -> None:
        """Assert the devices ``names`` (``read(name)`` gives a device's blocks) are what may
        be there; ``optional`` snapshots may be gone. Settles the in-flight operation."""
        kind, argument = self.in_flight
        expected = set(self.snapshots) | {"v"}
        if kind == "snapshot" and argument in names:
            expected.add(argument)
            self.snapshots[argument] = list(self.current)
        if kind == "delete" and argument not in names:
            expected.discard(argument)
            del self.snapshots[argument]
        for name in set(optional) - names:
            expected.discard(name)
            self.snapshots.pop(name, None)
        assert names == expected, f"devices {sorted(names)}, expected {sorted(expected)}"
        for name in names - {"v"}:
            assert read(name) == self.snapshots[name], f"snapshot {name} changed"
        actual = read("v")
        if kind == "revert" and actual == self.snapshots[argument]:
            return
        for block, data in enumerate(actual):
            assert data == self.blocks[block] or data in self.later[block], (
                f"block {block} lost a durable write: has {data[:24]!r}, "
                f"durable {self.blocks[block][:24]!r}"
            )
