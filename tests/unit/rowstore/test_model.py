"""Model-based test: random operation sequences against a byte-for-byte model of every device.

After every step each device's bytes must equal the model's and the checker must find no
problem. Small chunks and a fan-out of 4 make multi-level trees, shared interior nodes and
node pruning happen within a few kilobytes.
"""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from evs_driver import exception
from evs_driver.rowstore import Pool

CHUNK = 4096
CAPACITY_CHUNKS = 96


class PoolModel(RuleBasedStateMachine):
    volumes = Bundle("volumes")
    snapshots = Bundle("snapshots")
    pool_options: dict = {}  # more arguments of Pool.create and Pool.open

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="evs-model-")
        self.path = os.path.join(self.dir, "pool")
        self.pool = Pool.create(
            self.path,
            CAPACITY_CHUNKS * CHUNK,
            CHUNK,
            node_bits=2,
            background=False,
            **self.pool_options,
        )
        self.model: dict[str, bytearray] = {}
        self.origin: dict[str, str] = {}
        self.counter = 0

    def teardown(self):
        self.pool.close()
        shutil.rmtree(self.dir)

    def _name(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _offset_length(self, name, data):
        size = len(self.model[name])
        offset = data.draw(st.integers(0, size - 1))
        # Often smaller than a chunk, so writes after snapshots make overlays.
        longest = min(size - offset, data.draw(st.sampled_from([CHUNK // 4, 3 * CHUNK])))
        length = data.draw(st.integers(1, longest))
        return offset, length

    @rule(target=volumes, size=st.integers(1, 40 * CHUNK))
    def create_volume(self, size):
        name = self._name("v")
        self.pool.create_volume(name, size)
        self.model[name] = bytearray(size)
        return name

    @rule(volume=volumes, data=st.data())
    def write(self, volume, data):
        if volume not in self.model:
            return
        offset, length = self._offset_length(volume, data)
        payload = data.draw(st.binary(min_size=length, max_size=length))
        try:
            self.pool.write(volume, offset, payload)
        except exception.PoolFull:
            return  # nothing may change: the invariant compares the old bytes
        self.model[volume][offset : offset + length] = payload

    @rule(volume=volumes, data=st.data())
    def discard(self, volume, data):
        if volume not in self.model:
            return
        offset, length = self._offset_length(volume, data)
        try:
            self.pool.discard(volume, offset, length)
        except exception.PoolFull:
            return  # a partial-chunk discard of a shared chunk needs a new chunk
        self.model[volume][offset : offset + length] = bytes(length)

    @rule(target=snapshots, volume=volumes)
    def snapshot(self, volume):
        if volume not in self.model:
            return "gone"
        name = self._name("s")
        self.pool.create_snapshot(volume, name)
        self.model[name] = bytearray(self.model[volume])
        self.origin[name] = volume
        return name

    @rule(target=volumes, source=st.one_of(volumes, snapshots), grow=st.integers(0, 20 * CHUNK))
    def clone(self, source, grow):
        if source not in self.model:
            return "gone"
        name = self._name("c")
        self.pool.clone(source, name, len(self.model[source]) + grow)
        self.model[name] = self.model[source] + bytearray(grow)
        return name

    @rule(snapshot=snapshots)
    def revert(self, snapshot):
        volume = self.origin.get(snapshot)
        if snapshot not in self.model or volume not in self.model:
            return
        self.pool.revert(volume, snapshot)
        size = len(self.model[volume])
        self.model[volume] = self.model[snapshot] + bytearray(size - len(self.model[snapshot]))

    @rule(volume=volumes, grow=st.integers(0, 60 * CHUNK))
    def extend(self, volume, grow):
        if volume not in self.model:
            return
        self.pool.extend(volume, len(self.model[volume]) + grow)
        self.model[volume] += bytearray(grow)

    @rule(name=st.one_of(consumes(volumes), consumes(snapshots)))
    def delete(self, name):
        if name not in self.model:
            return
        self.pool.delete(name)
        del self.model[name]

    @rule()
    def collect(self):
        self.pool.collect()

    @rule()
    def reopen(self):
        self.pool.close()
        self.pool = Pool.open(self.path, background=False, **self.pool_options)

    @precondition(lambda self: self.model)
    @invariant()
    def bytes_match(self):
        for name, expected in self.model.items():
            assert self.pool.read(name, 0, len(expected)) == expected, name

    @invariant()
    def metadata_consistent(self):
        report = self.pool.check()
        assert report.clean, report.problems

    @invariant()
    def space_accounted(self):
        usage = self.pool.usage()
        assert 0 <= usage.used_bytes <= usage.total_bytes
        for name in self.model:
            info = self.pool.device(name)
            assert info.mapped_bytes <= -(-info.size // CHUNK) * CHUNK


MODEL_SETTINGS = settings(
    max_examples=int(os.environ.get("EVS_MODEL_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PoolModel.TestCase.settings = MODEL_SETTINGS
TestPoolModel = PoolModel.TestCase
