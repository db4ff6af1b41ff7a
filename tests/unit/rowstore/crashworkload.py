"""A recorded workload on a pool, and what each of its crash states must show.

Every unit (512 bytes) a workload writes names its unit and a tag unique to that write, so
a read tells exactly which write put it there, or that no write did (torn, stale or another
device's data). The model keeps, after every operation, each device's tags per unit; a
crash state must then show:
- the devices as after the last operation that returned, or as after the one in flight;
- in each unit, the tag it had at the last durable point (a flush, a collection or a
  control operation that returned) or one written after it (or by the operation in flight);
- free chunks that read as zeros, unless the pool is marked as not closed cleanly (it then
  zeroes them before it allocates one);
- a clean check, and, once every device is deleted and collected, no space in use.
"""

import os
import random

from evs_driver.rowstore import Pool
from tests.unit.rowstore.crashstates import RecordingDisk, crash_state, write_state

CHUNK = 4096
UNIT = 512
UNITS = 64  # a new volume: 8 chunks
CAPACITY_CHUNKS = 512
DURABLE = {
    "flush", "collect", "create", "snapshot", "group_snapshot", "clone", "revert",
    "group_revert", "delete", "extend",
}  # fmt: skip


def unit_bytes(unit: int, tag: int) -> bytes:
    if not tag:
        return bytes(UNIT)
    head = f"unit {unit} tag {tag};".encode()
    return (head * (UNIT // len(head) + 1))[:UNIT]


class Workload:
    """Runs operations on a recorded pool and keeps the model after each."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "pool")
        Pool.create(
            self.path, CAPACITY_CHUNKS * CHUNK, CHUNK, node_bits=2, background=False
        ).close()
        self.disk = RecordingDisk()
        self.pool = Pool.open(self.path, background=False, disk=self.disk)
        self.disk.start(self.path)
        self.model: dict[str, list[int]] = {}
        self.origin: dict[str, str] = {}
        self.history: list[tuple[str, dict]] = []  # (operation, model after it)
        self.tag = 0
        self.serial = 0

    def close(self) -> None:
        self.disk.stop()
        self.pool.close()

    def _pick(self, names: list[str], index: int) -> str | None:
        return sorted(names)[index % len(names)] if names else None

    def run(self, operation: tuple) -> None:
        """Run one operation (skipped when it does not apply), log its return."""
        kind = operation[0]
        volumes = [n for n in self.model if not n.startswith("s")]
        done = getattr(self, "_" + kind)(volumes, *operation[1:])
        if done:
            self.history.append((kind, {n: list(v) for n, v in self.model.items()}))
            self.disk.ack(len(self.history) - 1)

    def _name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def _create(self, volumes):
        name = self._name("v")
        self.pool.create_volume(name, UNITS * UNIT)
        self.model[name] = [0] * UNITS
        return True

    def _range(self, volumes, index, first, count) -> tuple[str, list[int], int, int] | None:
        """The volume, its units and the unit range an operation addresses (None: no volume)."""
        volume = self._pick(volumes, index)
        if volume is None:
            return None
        units = self.model[volume]
        first %= len(units)
        return volume, units, first, min(count, len(units) - first)

    def _write(self, volumes, *where):
        target = self._range(volumes, *where)
        if target is None:
            return False
        volume, units, first, count = target
        data = bytearray()
        for unit in range(first, first + count):
            self.tag += 1
            units[unit] = self.tag
            data += unit_bytes(unit, self.tag)
        self.pool.write(volume, first * UNIT, bytes(data))
        return True

    def _discard(self, volumes, *where):
        target = self._range(volumes, *where)
        if target is None:
            return False
        volume, units, first, count = target
        self.pool.discard(volume, first * UNIT, count * UNIT)
        units[first : first + count] = [0] * count
        return True

    def _flush(self, volumes):
        self.pool.flush()
        return True

    def _collect(self, volumes):
        self.pool.collect()
        return True

    def _snapshot(self, volumes, index):
        volume = self._pick(volumes, index)
        if volume is None:
            return False
        name = self._name("s")
        self.pool.create_snapshot(volume, name)
        self.model[name] = list(self.model[volume])
        self.origin[name] = volume
        return True

    def _group_snapshot(self, volumes, index):
        """Every volume (from ``index`` on, at most three) at one instant."""
        members = sorted(volumes)[index % max(len(volumes), 1) :][:3]
        if not members:
            return False
        names = [self._name("s") for _ in members]
        self.pool.snapshot_all(list(zip(members, names, strict=True)))
        for volume, name in zip(members, names, strict=True):
            self.model[name] = list(self.model[volume])
            self.origin[name] = volume
        return True

    def _group_revert(self, volumes, index):
        """Each volume to its newest snapshot, in one transaction."""
        newest = {v: s for s, v in sorted(self.origin.items(), key=lambda i: int(i[0][1:]))}
        pairs = [(v, s) for v, s in sorted(newest.items()) if v in self.model and s in self.model]
        if not pairs:
            return False
        self.pool.revert_all(pairs[index % len(pairs) :])
        for volume, snapshot in pairs[index % len(pairs) :]:
            size = len(self.model[volume])
            self.model[volume] = self.model[snapshot] + [0] * (size - len(self.model[snapshot]))
        return True

    def _clone(self, volumes, index, grow):
        source = self._pick(list(self.model), index)
        if source is None:
            return False
        name = self._name("c")
        size = len(self.model[source]) + grow
        self.pool.clone(source, name, size * UNIT)
        self.model[name] = self.model[source] + [0] * grow
        return True

    def _revert(self, volumes, index):
        snapshot = self._pick([s for s, v in self.origin.items() if v in self.model], index)
        if snapshot is None or snapshot not in self.model:
            return False
        volume = self.origin[snapshot]
        self.pool.revert(volume, snapshot)
        size = len(self.model[volume])
        self.model[volume] = self.model[snapshot] + [0] * (size - len(self.model[snapshot]))
        return True

    def _delete(self, volumes, index):
        name = self._pick(list(self.model), index)
        if name is None:
            return False
        self.pool.delete(name)
        del self.model[name]
        self.origin.pop(name, None)
        return True

    def _extend(self, volumes, index, grow):
        volume = self._pick(volumes, index)
        if volume is None:
            return False
        self.pool.extend(volume, (len(self.model[volume]) + grow) * UNIT)
        self.model[volume] += [0] * grow
        return True

    # -- what a crash state must show ------------------------------------------------------
    def expectations(self, k: int) -> tuple[list[set], dict[str, list[set]], dict[str, set]]:
        """Allowed device sets, allowed tags per unit and allowed sizes at log position ``k``."""
        acked = sum(1 for event in self.disk.events[:k] if event[0] == "ack")

        def model(index: int) -> dict:
            return self.history[index][1] if index >= 0 else {}

        durable = max((i for i in range(acked) if self.history[i][0] in DURABLE), default=-1)
        models = [model(i) for i in range(durable, acked)]
        if acked < len(self.history):
            models.append(model(acked))  # the operation in flight, maybe not even started
        names = [set(model(acked - 1)), set(models[-1])]
        tags: dict[str, list[set]] = {}
        sizes: dict[str, set] = {}
        for state in models:
            for name, units in state.items():
                allowed = tags.setdefault(name, [])
                allowed.extend(set() for _ in range(len(units) - len(allowed)))
                for unit, tag in enumerate(units):
                    allowed[unit].add(tag)
                sizes.setdefault(name, set()).add(len(units))
        return names, tags, sizes


def verify(
    workload: Workload, k: int, rng: random.Random, directory: str, mode: str = "any"
) -> None:
    """Build one crash state at ``k``, open it with the engine and check everything."""
    images = crash_state(workload.disk.base, workload.disk.events, k, rng, mode)
    write_state(images, directory)
    names, tags, sizes = workload.expectations(k)
    with Pool.open(directory, background=False) as pool:
        if pool._transaction.marked_clean:
            _free_chunks_read_as_zeros(pool, os.path.join(directory, "data"), k)
        found = {d.name for d in pool.devices()}
        assert found in names, (k, found, names)
        for name in sorted(found):
            size = pool.device(name).size // UNIT
            assert size in sizes[name], (k, name, size, sizes[name])
            data = pool.read(name, 0, size * UNIT)
            for unit in range(size):
                got = data[unit * UNIT : (unit + 1) * UNIT]
                allowed = tags[name][unit] if unit < len(tags[name]) else {0}
                assert any(got == unit_bytes(unit, tag) for tag in allowed), (
                    f"crash at {k}: {name} unit {unit} reads {got[:24]!r}, "
                    f"allowed tags {sorted(allowed)}"
                )
        report = pool.check()
        assert report.clean, (k, report.problems)
        for name in sorted(found):
            pool.delete(name)
        pool.collect()
        usage = pool.usage()
        assert usage.used_bytes == 0 and pool.garbage_nodes == 0, (k, usage)
        assert pool.check().clean


def _free_chunks_read_as_zeros(pool: Pool, data_path: str, k: int) -> None:
    """Every chunk a new write could be given reads as zeros in the data file."""
    datamap = pool._datamap
    free = set(datamap.free_chunks()) | set(range(datamap.high_water, CAPACITY_CHUNKS))
    with open(data_path, "rb") as file:
        data = file.read()
    for chunk in sorted(free):
        content = data[chunk * CHUNK : (chunk + 1) * CHUNK]
        assert content.count(0) == len(content), f"crash at {k}: free chunk {chunk} holds data"
