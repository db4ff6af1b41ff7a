"""Model-based test of diffs: random writes, discards, snapshots, extends, reverts and
reopens of a volume; then, between any two of its snapshots (or the volume itself, or
nothing), applying the diff's extents to a copy of the older one gives the newer one byte
for byte, the answer never names a chunk that was not written in between, and asking in
small pieces (``limit``) gives the same answer as asking at once.

Chunks of 4 KiB with a fan-out of 4 make deep trees and shared interior nodes; overlays
(256-byte blocks here) make diffs finer than a chunk.
"""

import io
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from evs_driver import diffstream, exception
from evs_driver.blockdev import CHANGED
from evs_driver.rowstore import Pool

CHUNK = 4096
CAPACITY_CHUNKS = 160
VOLUME = "v"


class DiffModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="evs-diff-model-")
        self.path = os.path.join(self.dir, "pool")
        self.pool = Pool.create(
            self.path, CAPACITY_CHUNKS * CHUNK, CHUNK, node_bits=2, background=False
        )
        self.model: dict[str, bytearray] = {}
        self.born: dict[str, int] = {}  # device -> index into self.events when taken
        self.events: list[set[int] | None] = []  # chunks each change touched; None: all
        self.counter = 0

    def teardown(self):
        self.pool.close()
        shutil.rmtree(self.dir)

    @initialize(size=st.integers(1, 48 * CHUNK))
    def create(self, size):
        self.pool.create_volume(VOLUME, size)
        self.model[VOLUME] = bytearray(size)

    def _range(self, data):
        size = len(self.model[VOLUME])
        offset = data.draw(st.integers(0, size - 1))
        longest = min(size - offset, data.draw(st.sampled_from([CHUNK // 8, CHUNK, 5 * CHUNK])))
        return offset, data.draw(st.integers(1, longest))

    def _touch(self, offset, length):
        self.events.append(set(range(offset // CHUNK, (offset + length - 1) // CHUNK + 1)))

    @rule(data=st.data())
    def write(self, data):
        offset, length = self._range(data)
        payload = data.draw(st.binary(min_size=length, max_size=length))
        try:
            self.pool.write(VOLUME, offset, payload)
        except exception.PoolFull:
            return
        self.model[VOLUME][offset : offset + length] = payload
        self._touch(offset, length)

    @rule(data=st.data())
    def discard(self, data):
        offset, length = self._range(data)
        try:
            self.pool.discard(VOLUME, offset, length)
        except exception.PoolFull:
            return
        self.model[VOLUME][offset : offset + length] = bytes(length)
        self._touch(offset, length)

    @rule(data=st.data())
    def discard_whole_chunks(self, data):
        """Unmapped chunks: what a diff reports as zero extents."""
        chunks = len(self.model[VOLUME]) // CHUNK
        if chunks:
            first = data.draw(st.integers(0, chunks - 1))
            count = data.draw(st.integers(1, chunks - first))
            self.pool.discard(VOLUME, first * CHUNK, count * CHUNK)
            self.model[VOLUME][first * CHUNK : (first + count) * CHUNK] = bytes(count * CHUNK)
            self._touch(first * CHUNK, count * CHUNK)

    @rule()
    def snapshot(self):
        self.counter += 1
        name = f"s{self.counter}"
        self.pool.create_snapshot(VOLUME, name)
        self.model[name] = bytearray(self.model[VOLUME])
        self.born[name] = len(self.events)

    @rule(grow=st.one_of(st.integers(1, 40 * CHUNK), st.integers(1, 300 * CHUNK)))
    def extend(self, grow):
        self.pool.extend(VOLUME, len(self.model[VOLUME]) + grow)
        self.model[VOLUME] += bytearray(grow)

    @rule(data=st.data())
    def revert(self, data):
        snapshots = sorted(set(self.model) - {VOLUME})
        if not snapshots:
            return
        name = data.draw(st.sampled_from(snapshots))
        self.pool.revert(VOLUME, name)
        size = len(self.model[VOLUME])
        self.model[VOLUME] = self.model[name] + bytearray(size - len(self.model[name]))
        self.events.append(None)

    @rule(data=st.data())
    def delete_snapshot(self, data):
        snapshots = sorted(set(self.model) - {VOLUME})
        if snapshots:
            name = data.draw(st.sampled_from(snapshots))
            self.pool.delete(name)
            del self.model[name]

    @rule()
    def reopen(self):
        self.pool.close()
        self.pool = Pool.open(self.path, background=False)

    @rule(data=st.data())
    def diff_applies(self, data):
        names = sorted(self.model)
        old = data.draw(st.sampled_from([None, *names]))
        new = data.draw(st.sampled_from(names))
        runs, complete = self.pool.diff(old, new)
        old_bytes = self.model[old] if old else bytearray()
        new_bytes = self.model[new]
        size = max(len(old_bytes), len(new_bytes))
        assert complete == size
        # Applying the extents to a copy of the old device gives the new one.
        copy = bytearray(old_bytes) + bytearray(size - len(old_bytes))
        padded = bytearray(new_bytes) + bytearray(size - len(new_bytes))
        for offset, length, kind in runs:
            assert length > 0 and offset + length <= size
            if kind == "data":  # may reach past a smaller new device's end: its zeros
                copy[offset : offset + length] = padded[offset : offset + length]
            else:
                assert kind == "zero"
                copy[offset : offset + length] = bytes(length)
        assert copy == padded
        # Nothing outside what was written between the two is named.
        touched = self._touched(old, new)
        if touched is not None:
            named = {c for o, n, _ in runs for c in range(o // CHUNK, (o + n - 1) // CHUNK + 1)}
            assert named <= touched
        # In pieces, the same answer.
        limit = data.draw(st.integers(1, 3))
        pieces, position = [], 0
        while position < size:
            part, position = self.pool.diff(old, new, position, size - position, limit)
            assert len(part) <= limit
            pieces += part
        assert _merged(pieces) == runs
        # As NBD runs: they cover the range from its start, dirty exactly where it differs.
        if new == VOLUME and old is not None and size:
            start = data.draw(st.integers(0, size - 1))
            answer = self.pool.changes(old, new, start, size - start, 4)
            assert sum(length for length, _ in answer) <= size - start
            position = start
            for length, flags in answer:
                differs = any(o < position + length and position < o + n for o, n, _ in runs)
                assert bool(flags & CHANGED) == differs
                position += length

    @rule(data=st.data())
    def stream_rebuilds_the_newer_snapshot(self, data):
        """``evs snapshot export --from`` then ``import-diff``, as the manager runs them:
        the stream of the diff applied to a clone of the older device gives the newer."""
        names = sorted(set(self.model) - {VOLUME})
        if not names:
            return
        old = data.draw(st.sampled_from([*names, None]))  # mostly snapshot to snapshot
        new = data.draw(st.sampled_from(names[::-1]))
        size = len(self.model[new])
        if old is not None and len(self.model[old]) > size:
            return  # an import goes onto a volume at least its base's size
        out = io.BytesIO()
        header = {"format": "evs-diff", "volume": {"id": VOLUME}, "to": {"id": new, "size": size}}
        writer = diffstream.StreamWriter(out, {**header, "from": old and {"id": old}})
        runs, _ = self.pool.diff(old, new)
        for offset, length, kind in runs:
            if kind == "zero":
                writer.zero(offset, length)
            else:
                writer.data(offset, self.pool.read(new, offset, length))
        writer.finish()
        if old is None:
            self.pool.create_volume("copy", size)
        else:
            self.pool.clone(old, "copy", size)
        try:
            out.seek(0)
            for record in diffstream.StreamReader(out, "model").records():
                if record.data is None:
                    self.pool.discard("copy", record.offset, record.length)
                else:
                    self.pool.write("copy", record.offset, record.data)
            assert self.pool.read("copy", 0, size) == bytes(self.model[new])
        except exception.PoolFull:
            pass  # the pool is small on purpose; the other rules go on
        finally:
            self.pool.delete("copy")
            self.pool.collect()

    def _touched(self, old, new) -> set[int] | None:
        """Chunks written between ``old`` and ``new`` was taken; None when a revert came
        between them (anything may differ) or ``old`` is no device (all that is mapped)."""
        if old is None:
            return None
        now = len(self.events)
        low, high = sorted((self.born.get(old, now), self.born.get(new, now)))
        touched: set[int] = set()
        for event in self.events[low:high]:
            if event is None:
                return None
            touched |= event
        return touched

    @invariant()
    def metadata_consistent(self):
        report = self.pool.check()
        assert report.clean, report.problems


def _merged(runs):
    """Adjacent runs of one kind as one (answers given in pieces split them)."""
    out = []
    for offset, length, kind in runs:
        if out and out[-1][2] == kind and out[-1][0] + out[-1][1] == offset:
            out[-1] = (out[-1][0], out[-1][1] + length, kind)
        else:
            out.append((offset, length, kind))
    return out


DiffModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("EVS_MODEL_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDiffModel = DiffModel.TestCase
