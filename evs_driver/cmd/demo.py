"""``evs demo``: the EVS snapshot example, run on a real local pool, every step verified.

Disk v1 gets d1, d2; snapshot s1 → {d1, d2}; d3 is written and d2 changed to d4, both to
new space; snapshot s2 → {d1, d3, d4}. Then: revert to the older snapshot, a volume from
the newer one, and deletes, with the pool's used space printed after each step.
"""

import contextlib
import os
import shutil
import tempfile

from oslo_config import cfg

from evs_driver import conf as evs_conf
from evs_driver import exception
from evs_driver.manager import VolumeManager

BLOCK = 64 * 1024  # one chunk of the demo pool


def _data(tag: str) -> bytes:
    return (tag.encode() * BLOCK)[:BLOCK]


D1, D2, D3, D4, ZERO = _data("d1"), _data("d2"), _data("d3"), _data("d4"), bytes(BLOCK)


class _Walk:
    """Prints steps and checks; remembers whether every check held."""

    def __init__(self, manager: VolumeManager, out):
        self.m = manager
        self.out = out
        self.failed = 0
        self.driver = next(iter(manager.drivers.values()))
        self.backend = next(iter(manager.drivers))

    def step(self, text: str) -> None:
        print(f"\n== {text}", file=self.out)

    def used(self) -> int:
        with self.m.lock(self.backend):
            self.driver.collect()
            stats = self.driver.pool_stats()
        return stats.total_bytes - stats.free_bytes

    def space(self, before: int | None = None) -> int:
        used = self.used()
        delta = "" if before is None else f" ({(used - before) // BLOCK:+d} chunks)"
        print(f"   pool used: {used // 1024} KiB{delta}", file=self.out)
        return used

    def write(self, ref: str, block: int, data: bytes) -> None:
        volume = self.m.get_volume(ref)
        with self.m.lock(self.backend), self.driver.open_device(volume, writable=True) as dev:
            dev.write(block * BLOCK, data)
            dev.flush()

    def expect(self, kind: str, ref: str, blocks: list[tuple[bytes, str]]) -> None:
        record = self.m.get_volume(ref) if kind == "volume" else self.m.get_snapshot(ref)
        with self.m.lock(self.backend), self.driver.open_device(record, writable=False) as dev:
            got = [dev.read(i * BLOCK, BLOCK) for i in range(len(blocks))]
        for i, ((want, label), have) in enumerate(zip(blocks, got, strict=True)):
            ok = have == want
            self.failed += not ok
            print(f"   {ref} block {i}: {label:4} {'ok' if ok else 'WRONG'}", file=self.out)

    def exclusive(self, ref: str) -> None:
        usage = self.m.usage(self.m.get_snapshot(ref))
        print(f"   {ref} holds {usage.exclusive_bytes // 1024} KiB alone", file=self.out)


def _walk(w: _Walk) -> None:
    m = w.m
    w.step("create volume v1 (1 GiB) and write d1, d2")
    m.create_volume(1, name="v1")
    start = w.space()
    w.write("v1", 0, D1)
    w.write("v1", 1, D2)
    before = w.space(start)

    w.step("snapshot s1: records {d1, d2}, copies no data")
    m.create_snapshot("v1", name="s1")
    before = w.space(before)
    w.expect("snapshot", "s1", [(D1, "d1"), (D2, "d2")])

    w.step("write d3, change d2 to d4: both go to new space, s1 unchanged")
    w.write("v1", 2, D3)
    w.write("v1", 1, D4)
    before = w.space(before)
    w.expect("volume", "v1", [(D1, "d1"), (D4, "d4"), (D3, "d3")])
    w.expect("snapshot", "s1", [(D1, "d1"), (D2, "d2"), (ZERO, "zero")])
    w.exclusive("s1")

    w.step("snapshot s2: records {d1, d3, d4}")
    m.create_snapshot("v1", name="s2")
    before = w.space(before)
    w.expect("snapshot", "s2", [(D1, "d1"), (D4, "d4"), (D3, "d3")])

    w.step("revert v1 to the older snapshot s1: s1 and s2 both survive")
    m.revert_volume("v1", "s1")
    before = w.space(before)
    w.expect("volume", "v1", [(D1, "d1"), (D2, "d2"), (ZERO, "zero")])
    w.expect("snapshot", "s2", [(D1, "d1"), (D4, "d4"), (D3, "d3")])

    w.step("create volume v2 from s2: a linked clone, no data copied")
    m.create_volume(name="v2", snapshot="s2")
    before = w.space(before)
    w.expect("volume", "v2", [(D1, "d1"), (D4, "d4"), (D3, "d3")])

    w.step("delete s2: v2 keeps d3, d4, so nothing is freed")
    m.delete_snapshot("s2")
    before = w.space(before)
    w.expect("volume", "v2", [(D1, "d1"), (D4, "d4"), (D3, "d3")])

    w.step("delete v2: d3 and d4 are now unreferenced and freed")
    m.delete_volume("v2")
    w.space(before)
    w.expect("snapshot", "s1", [(D1, "d1"), (D2, "d2"), (ZERO, "zero")])


def run(state_path: str | None, out) -> int:
    """Run the walkthrough in ``state_path`` (default: a temporary directory, removed after)."""
    temporary = state_path is None
    state_path = state_path or tempfile.mkdtemp(prefix="evs-demo-")
    if not temporary and os.path.exists(state_path) and os.listdir(state_path):
        raise exception.InvalidInput(reason=f"{state_path} is not empty; the demo needs a new one")
    conf = cfg.ConfigOpts()
    evs_conf.register_opts(conf)
    conf([], project="evs_driver", default_config_files=[])
    conf.set_override("state_path", state_path)
    conf.set_override("local_pool_capacity_gb", 1, group="backend_defaults")
    conf.set_override("local_pool_chunk_size", BLOCK, group="backend_defaults")
    print(f"EVS snapshot walkthrough in {state_path} (chunk size {BLOCK // 1024} KiB)", file=out)
    manager = VolumeManager(conf)
    try:
        walk = _Walk(manager, out)
        _walk(walk)
        problems = sum(len(p) for p in manager.check().values())
    finally:
        manager.close()
        if temporary:
            with contextlib.suppress(OSError):
                shutil.rmtree(state_path)
    print(f"\npool check: {'clean' if not problems else f'{problems} problem(s)'}", file=out)
    if walk.failed or problems:
        raise exception.EVSError(f"walkthrough failed: {walk.failed} wrong block(s)")
    print("every block read back as expected", file=out)
    return 0
