"""A pool: volumes and snapshots as redirect-on-write trees over one chunk store.

Layering (each module knows only the ones below it):
``pool`` -> ``tree`` -> ``nodes`` -> ``spacemap`` and ``metastore``; data goes to ``chunkstore``.

Concurrency: ``_lock`` guards all metadata and is never held across data I/O except the
fdatasync of a commit; each device has a reader-writer lock so reads of a device run in
parallel while its writes, discards and control operations are serialized.

Crash rules: data is written (and, at commit, synced) before the metadata that maps it
commits; a chunk is overwritten in place only when its own reference count and every node
above it say that nothing else can see it; control operations commit before returning.
"""

import contextlib
import logging
import os
import threading
import time

from evs_driver import exception
from evs_driver.backends.base import CheckReport
from evs_driver.blockdev import HOLE, ZERO, Extents
from evs_driver.rowstore import checker, collector, overlays
from evs_driver.rowstore.chunkstore import ChunkStore
from evs_driver.rowstore.devices import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNKS,
    SNAPSHOT,
    VOLUME,
    Device,
    DeviceInfo,
    PoolUsage,
    validate_chunk_size,
    validate_name,
    validate_size,
)
from evs_driver.rowstore.lockfile import PoolLock
from evs_driver.rowstore.metastore import Change, MetaStore
from evs_driver.rowstore.nodes import DEFAULT_BITS, NodeStore, height_for
from evs_driver.rowstore.overlays import Overlays
from evs_driver.rowstore.spacemap import SpaceMap
from evs_driver.rowstore.tree import find_leaf, grow, lookup_run, prune, writable_path

LOG = logging.getLogger(__name__)

DATA_FILE = "data"
META_FILE = "metadata.sqlite"
LOCK_FILE = "lock"
EXTENT_CHUNKS = 65536  # chunks one extents() call looks up; the caller asks again for more


class Pool:
    """Volumes and snapshots in one directory. Use ``Pool.create`` or ``Pool.open``."""

    def __init__(self, path: str, commit_interval: float = 1.0, background: bool = True):
        """Open an existing pool (see ``open``).

        ``background=False`` runs no worker thread: metadata then commits only on flush and
        control operations, and garbage is collected only by ``collect`` (deterministic tests).
        """
        self.path = os.path.abspath(path)
        meta_path = os.path.join(self.path, META_FILE)
        if not os.path.exists(meta_path):
            raise exception.InvalidPool(path=self.path, reason=f"{META_FILE} is missing")
        self._pool_lock = PoolLock(os.path.join(self.path, LOCK_FILE), self.path)
        try:
            self._load(meta_path)
        except BaseException:
            self._pool_lock.release()
            raise
        self._commit_interval = commit_interval
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._background, name="evs-pool", daemon=True)
        if background:
            self._worker.start()

    # -- creating and opening ----------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str,
        capacity: int,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        commit_interval: float = 1.0,
        node_bits: int = DEFAULT_BITS,
        background: bool = True,
    ) -> "Pool":
        """Create a pool of ``capacity`` bytes (rounded down to whole chunks) in a new directory.

        ``node_bits`` sets the tree's fan-out (2**bits); tests use small ones to get deep trees.
        """
        validate_chunk_size(chunk_size)
        if not isinstance(node_bits, int) or not 2 <= node_bits <= 12:
            raise exception.InvalidInput(reason=f"node_bits {node_bits!r} must be from 2 to 12")
        validate_size(capacity, "capacity")
        chunks = capacity // chunk_size
        if not 1 <= chunks <= MAX_CHUNKS:
            raise exception.InvalidSize(
                reason=f"capacity {capacity} must hold 1 to {MAX_CHUNKS} chunks of {chunk_size} bytes"
            )
        path = os.path.abspath(path)
        os.makedirs(path, exist_ok=True)
        meta_path = os.path.join(path, META_FILE)
        if os.path.exists(meta_path):
            raise exception.AlreadyExists(kind="Pool", name=path)
        lock = PoolLock(os.path.join(path, LOCK_FILE), path)
        try:
            with open(os.path.join(path, DATA_FILE), "wb"):
                pass
            meta = MetaStore(meta_path)
            meta.create_schema(
                {
                    "chunk_size": chunk_size,
                    "node_bits": node_bits,
                    "capacity_chunks": chunks,
                    "data_high_water": 0,
                    "node_high_water": 0,
                    "next_device_id": 1,
                    "clean": 1,
                    "created_at": time.time(),
                }
            )
            meta.close()
        finally:
            lock.release()
        return cls(path, commit_interval, background)

    @classmethod
    def open(cls, path: str, commit_interval: float = 1.0, background: bool = True) -> "Pool":
        """Open a pool; ``PoolBusy`` when another process has it open."""
        return cls(path, commit_interval, background)

    def _load(self, meta_path: str) -> None:
        self._meta = MetaStore(meta_path)
        self._meta.upgrade(self.path)
        settings = self._meta.settings()
        self.chunk_size = int(settings["chunk_size"])
        self._block = self.chunk_size // overlays.BLOCKS
        self._overlays = Overlays(self._meta.overlays())
        self.capacity_chunks = int(settings["capacity_chunks"])
        self.capacity = self.capacity_chunks * self.chunk_size
        self._next_device_id = int(settings["next_device_id"])
        garbage = self._meta.garbage()
        self._data = SpaceMap(
            self.path,
            self._meta.pages("data"),
            int(settings["data_high_water"]),
            self.capacity_chunks,
        )
        node_refs = SpaceMap(
            self.path + " metadata",
            self._meta.pages("node"),
            int(settings["node_high_water"]),
            None,
            busy={node_id - 1 for node_id in garbage},
        )
        self._bits = int(settings["node_bits"])
        self._nodes = NodeStore(self._meta.node, node_refs, self._data, garbage, self._bits)
        self._devices: dict[str, Device] = {}
        self._by_id: dict[int, Device] = {}
        for row in self._meta.devices():
            self._register(Device(*row))
        self._dirty_devices: set[int] = set()
        self._deleted_devices: set[int] = set()
        self._dirty = False
        self._lock = threading.RLock()
        self._chunks = ChunkStore(
            os.path.join(self.path, DATA_FILE), self.chunk_size, self.capacity_chunks, self.path
        )
        self._last_commit = time.monotonic()
        if int(settings.get("clean", 0)) != 1:
            self._recover_free_space()
        self._save_settings(clean=0)

    def _recover_free_space(self) -> None:
        """After a crash, free chunks may hold data of writes that never committed: zero them."""
        LOG.warning("Pool %s was not closed cleanly; zeroing its free chunks", self.path)
        free = self._data.recycle() + self._data.free_blocks()
        self._chunks.zero_chunks(free)
        beyond = self._data.high_water * self.chunk_size
        if beyond < self.capacity:
            self._chunks.zero(beyond, self.capacity - beyond)
        self._chunks.sync()

    def _save_settings(self, **settings) -> None:
        change = Change()
        change.settings.update(settings)
        self._meta.save(change)

    def close(self) -> None:
        """Commit everything, mark the pool cleanly closed and release it."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join()
        with self._lock:
            self._commit_locked()
            self._save_settings(clean=1)
            self._chunks.close()
            self._meta.close()
        self._pool_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- devices: lookup ------------------------------------------------------------------
    def _register(self, device: Device) -> None:
        self._devices[device.name] = device
        self._by_id[device.id] = device

    def _device(self, name: str) -> Device:
        device = self._devices.get(name)
        if device is None:
            raise exception.NotFound(kind="Device", name=name)
        return device

    def _info(self, device: Device) -> DeviceInfo:
        origin = self._by_id.get(device.origin) if device.origin else None
        return DeviceInfo(
            device.name,
            device.kind,
            device.size,
            origin.name if origin else None,
            device.mapped * self.chunk_size,
            device.created_at,
        )

    def exists(self, name: str) -> bool:
        """True when a volume or snapshot of this name exists."""
        return name in self._devices

    def device(self, name: str) -> DeviceInfo:
        """Describe one volume or snapshot."""
        with self._lock:
            return self._info(self._device(name))

    def devices(self) -> list[DeviceInfo]:
        """Every volume and snapshot, oldest first."""
        with self._lock:
            return [self._info(d) for d in sorted(self._devices.values(), key=lambda d: d.id)]

    def _height(self, size: int) -> int:
        return height_for(-(-size // self.chunk_size), self._bits)

    def _new_device(
        self, name: str, kind: str, size: int, root: int, origin: int | None, mapped: int
    ) -> Device:
        if name in self._devices:
            raise exception.AlreadyExists(kind="Device", name=name)
        device = Device(self._next_device_id, name, kind, size, root, origin, mapped, time.time())
        self._next_device_id += 1
        self._register(device)
        self._touch(device)
        return device

    def _touch(self, device: Device) -> None:
        self._dirty_devices.add(device.id)
        self._dirty = True

    # -- devices: control operations (each commits before returning) ---------------------------
    def create_volume(self, name: str, size: int) -> DeviceInfo:
        """Create an empty thin volume of ``size`` bytes."""
        validate_name(name)
        validate_size(size)
        with self._lock:
            device = self._new_device(name, VOLUME, size, 0, None, 0)
            self._commit_locked()
            return self._info(device)

    def create_snapshot(self, volume: str, name: str) -> DeviceInfo:
        """Share the volume's current tree under a read-only name: O(1), no data copied."""
        validate_name(name)
        source = self._device(volume)
        if source.kind != VOLUME:
            raise exception.InvalidOperation(reason=f"{volume} is a snapshot; snapshot a volume")
        with source.lock.write(), self._lock:  # the write barrier: no write of it in flight
            self._require_alive(source)
            if source.root:
                self._nodes.inc(source.root)
            device = self._new_device(
                name, SNAPSHOT, source.size, source.root, source.id, source.mapped
            )
            self._commit_locked()
            return self._info(device)

    def clone(self, source: str, name: str, size: int | None = None) -> DeviceInfo:
        """Create a volume sharing every chunk of ``source`` (a snapshot or a volume)."""
        validate_name(name)
        origin = self._device(source)
        size = origin.size if size is None else size
        validate_size(size)
        if size < origin.size:
            raise exception.InvalidSize(
                reason=f"new volume size {size} is smaller than {source}'s size {origin.size}"
            )
        guard = origin.lock.write() if origin.kind == VOLUME else origin.lock.read()
        with guard, self._lock:
            self._require_alive(origin)
            if name in self._devices:
                raise exception.AlreadyExists(kind="Device", name=name)
            if origin.root:
                self._nodes.inc(origin.root)
            root = grow(self._nodes, origin.root, self._height(origin.size), self._height(size))
            device = self._new_device(name, VOLUME, size, root, None, origin.mapped)
            self._commit_locked()
            return self._info(device)

    def revert(self, volume: str, snapshot: str) -> None:
        """Give ``volume`` the content of one of its snapshots; every snapshot is kept."""
        target = self._device(volume)
        source = self._device(snapshot)
        if target.kind != VOLUME:
            raise exception.InvalidOperation(reason=f"{volume} is not a volume")
        if source.kind != SNAPSHOT or source.origin != target.id:
            raise exception.InvalidOperation(
                reason=f"{snapshot} is not a snapshot of volume {volume}"
            )
        first, second = sorted((target, source), key=lambda d: d.id)
        with self._ordered(first, second, target), self._lock:
            self._require_alive(target)
            self._require_alive(source)
            old_root = target.root
            if source.root:
                self._nodes.inc(source.root)
            target.root = grow(
                self._nodes, source.root, self._height(source.size), self._height(target.size)
            )
            target.mapped = source.mapped
            if old_root:
                self._nodes.drop(old_root)
            self._touch(target)
            self._commit_locked()

    def _ordered(self, first: Device, second: Device, writer: Device):
        """Lock two devices in id order (no deadlock): the writer exclusively, the other shared."""
        stack = contextlib.ExitStack()
        for device in (first, second):
            stack.enter_context(device.lock.write() if device is writer else device.lock.read())
        return stack

    def extend(self, name: str, size: int) -> None:
        """Grow a volume to ``size`` bytes; new space reads as zeros."""
        validate_size(size)
        device = self._device(name)
        if device.kind != VOLUME:
            raise exception.InvalidOperation(
                reason=f"{name} is a snapshot; snapshots keep their size"
            )
        with device.lock.write(), self._lock:
            self._require_alive(device)
            if size < device.size:
                raise exception.InvalidSize(
                    reason=f"volumes never shrink: {name} is {device.size} bytes, asked for {size}"
                )
            device.root = grow(
                self._nodes, device.root, self._height(device.size), self._height(size)
            )
            device.size = size
            self._touch(device)
            self._commit_locked()

    def delete(self, name: str) -> None:
        """Remove a volume or snapshot; its exclusive chunks are freed by the collector."""
        device = self._device(name)
        with device.lock.write(), self._lock:
            self._require_alive(device)
            if device.root:
                self._nodes.drop(device.root)
            device.deleted = True
            del self._devices[name]
            del self._by_id[device.id]
            self._dirty_devices.discard(device.id)
            self._deleted_devices.add(device.id)
            self._dirty = True
            self._commit_locked()

    def _require_alive(self, device: Device) -> None:
        if device.deleted:
            raise exception.NotFound(kind="Device", name=device.name)

    # -- data path ------------------------------------------------------------------------
    def _check_io(self, device: Device, offset: int, length: int) -> None:
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
            raise exception.InvalidInput(
                reason=f"offset {offset!r} and length {length!r} must be non-negative integers"
            )
        if offset + length > device.size:
            raise exception.OutOfRange(
                device=device.name, offset=offset, length=length, size=device.size
            )

    def read(self, name: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``; unwritten ranges read as zeros."""
        self._check_io(self._device(name), offset, length)
        buf = bytearray(length)
        self.readinto(name, offset, buf)
        return bytes(buf)

    def readinto(self, name: str, offset: int, buf) -> None:
        """Fill ``buf`` with the bytes at ``offset``."""
        device = self._device(name)
        view = memoryview(buf).cast("B")
        length = len(view)
        self._check_io(device, offset, length)
        if not length:
            return
        size = self.chunk_size
        first = offset // size
        count = (offset + length - 1) // size - first + 1
        with device.lock.read():
            self._require_alive(device)
            with self._lock:
                entries = lookup_run(
                    self._nodes, device.root, self._height(device.size), first, count
                )
            # Rows of chunks this device maps only change under its write lock (or when
            # freed, which our references prevent), so they can be read without _lock.
            rows = self._overlays.rows
            # Coalesce physically consecutive pieces into one preadv each.
            run_position = run_start = run_end = -1
            for index, entry in enumerate(entries):
                start = max(offset, (first + index) * size) - offset
                end = min(offset + length, (first + index + 1) * size) - offset
                row = rows.get(entry - 1) if entry and rows else None
                if not entry or row:
                    if row:
                        self._read_overlay(
                            entry - 1, *row, (offset + start) % size, view[start:end]
                        )
                    else:
                        view[start:end] = bytes(end - start)
                    if run_start >= 0:
                        self._chunks.readinto(run_position, view[run_start:run_end])
                        run_start = -1
                    continue
                position = (entry - 1) * size + (offset + start) % size
                if run_start >= 0 and position == run_position + (run_end - run_start):
                    run_end = end
                    continue
                if run_start >= 0:
                    self._chunks.readinto(run_position, view[run_start:run_end])
                run_position, run_start, run_end = position, start, end
            if run_start >= 0:
                self._chunks.readinto(run_position, view[run_start:run_end])

    def extents(self, name: str, offset: int, length: int) -> Extents:
        """Which chunks of the range the device maps, as ``BlockDevice.extents`` runs: an
        unmapped chunk is a hole that reads as zeros. At most ``EXTENT_CHUNKS`` chunks a call."""
        device = self._device(name)
        self._check_io(device, offset, length)
        size = self.chunk_size
        first = offset // size
        count = min((offset + length - 1) // size - first + 1, EXTENT_CHUNKS) if length else 0
        with device.lock.read():
            self._require_alive(device)
            with self._lock:
                entries = lookup_run(
                    self._nodes, device.root, self._height(device.size), first, count
                )
        runs: Extents = []
        for index, entry in enumerate(entries):
            start = max(offset, (first + index) * size)
            run = min(offset + length, (first + index + 1) * size) - start
            flags = 0 if entry else HOLE | ZERO
            if runs and runs[-1][1] == flags:
                runs[-1] = (runs[-1][0] + run, flags)
            else:
                runs.append((run, flags))
        return runs

    def _read_overlay(self, chunk: int, base: int, valid: int, in_offset: int, view) -> None:
        """Read bytes of an overlay: valid blocks from it, the others from its base."""
        size = self.chunk_size
        wanted = overlays.block_mask(self._block, in_offset, len(view))
        if valid & wanted in (0, wanted):  # all from one chunk: the common case
            source = chunk if valid & wanted else base
            self._chunks.readinto(source * size + in_offset, view)
            return
        for start, end, in_overlay in overlays.segments(self._block, valid, in_offset, len(view)):
            source = chunk if in_overlay else base
            self._chunks.readinto(source * size + start, view[start - in_offset : end - in_offset])

    def _read_chunk(self, chunk: int, in_offset: int, view) -> None:
        """Read bytes of one physical chunk as its devices see them."""
        with self._lock:
            row = self._overlays.rows.get(chunk)
        if row is None:
            self._chunks.readinto(chunk * self.chunk_size + in_offset, view)
        else:
            self._read_overlay(chunk, row[0], row[1], in_offset, view)

    def write(self, name: str, offset: int, data, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable when this returns."""
        device = self._device(name)
        view = memoryview(data).cast("B")
        self._check_io(device, offset, len(view))
        if device.kind != VOLUME:
            raise exception.ReadOnlyDevice(name=name)
        if not len(view):
            return
        # Overwrites of unshared chunks change no metadata and only race like a disk's
        # overlapping writes, so they share the device with reads and each other; anything
        # that allocates or redirects takes the device alone. Right after a snapshot most
        # writes remap, so while they do, skip the shared attempt that would fail.
        plan = None
        if not device.remapping:
            with device.lock.read():
                self._require_alive(device)
                plan = self._plan_in_place(device, offset, view)
                if plan is not None:
                    self._write_data(plan)
        if plan is None:
            with device.lock.write():
                self._require_alive(device)
                device.remapping = self._write_locked(device, offset, view)
        if fua:
            self.flush()

    def _plan_in_place(self, device: Device, offset: int, view: memoryview) -> list | None:
        """The pieces of a write if every one lands in place on an unshared chunk, else None.

        A plan item is ``(vchunk, in_offset, piece, target, old entry, leaf, new_valid)``:
        ``leaf`` is set when the mapping changes, ``new_valid`` when the target is an overlay
        that gains those blocks.
        """
        size, mask, bits = self.chunk_size, self._nodes.mask, self._bits
        end = offset + len(view)
        plan = []
        with self._lock:
            height = self._height(device.size)
            leaf_key = leaf = None
            for vchunk in range(offset // size, (end - 1) // size + 1):
                if vchunk >> bits != leaf_key:
                    leaf_key = vchunk >> bits
                    leaf = self._exclusive_leaf(device, height, vchunk)
                entry = leaf.entries[vchunk & mask] if leaf else 0
                start = max(offset, vchunk * size)
                piece = view[start - offset : min(end, (vchunk + 1) * size) - offset]
                # Only writes that change no metadata run here, beside reads of the device.
                if self._new_valid(entry, start - vchunk * size, len(piece)) != 0:
                    return None
                plan.append((vchunk, start - vchunk * size, piece, entry - 1, entry, None, 0))
        return plan

    def _new_valid(self, entry: int, in_offset: int, length: int) -> int | None:
        """For a write into a mapped, unshared chunk: the overlay blocks it newly makes valid
        (0 for none, or for a plain chunk); None when the chunk is unmapped or shared."""
        if not entry or self._data.get(entry - 1) != 1:
            return None
        row = self._overlays.rows.get(entry - 1)
        if row is None:
            return 0
        return overlays.block_mask(self._block, in_offset, length) & ~row[1]

    def _write_locked(self, device: Device, offset: int, view: memoryview) -> bool:
        """Write under the device's exclusive lock; return whether the metadata changed."""
        size = self.chunk_size
        length = len(view)
        first = offset // size
        last = (offset + length - 1) // size
        plan = []  # see _plan_in_place
        mask = self._nodes.mask
        with self._lock:
            height = self._height(device.size)
            try:
                leaf_key = leaf = None
                for vchunk in range(first, last + 1):
                    start = max(offset, vchunk * size)
                    end = min(offset + length, (vchunk + 1) * size)
                    piece = view[start - offset : end - offset]
                    in_offset = start - vchunk * size
                    if vchunk >> self._bits != leaf_key:
                        leaf_key = vchunk >> self._bits
                        leaf = self._exclusive_leaf(device, height, vchunk)
                    entry = leaf.entries[vchunk & mask] if leaf else 0
                    new_valid = self._new_valid(entry, in_offset, len(piece))
                    if new_valid is None and leaf is None:
                        path = writable_path(self._nodes, device.root, height, vchunk)
                        device.root = path[0]
                        leaf = _WritableLeaf(self._nodes.get(path[-1]), path[-1], self._nodes)
                        self._touch(device)
                        entry = leaf.entries[vchunk & mask]
                        new_valid = self._new_valid(entry, in_offset, len(piece))
                    if new_valid is not None:  # in place
                        plan.append((vchunk, in_offset, piece, entry - 1, entry, None, new_valid))
                        continue
                    plan.append(
                        (
                            vchunk,
                            in_offset,
                            piece,
                            self._data.allocate(),
                            entry,
                            leaf,
                            self._redirect_valid(entry, in_offset, len(piece)),
                        )
                    )
            except BaseException:
                self._release_new(plan)
                raise
        try:
            self._write_data(plan)
        except BaseException:
            with self._lock:
                self._release_new(plan)
            raise
        with self._lock:
            for vchunk, _, _, target, old, leaf, new_valid in plan:
                if leaf is None:
                    if new_valid:
                        self._extend_overlay(target, new_valid)
                    continue
                leaf.entries[vchunk & mask] = target + 1
                leaf.mark_dirty()  # again: a commit since planning may have written it clean
                self._data.inc(target)
                if not old:
                    device.mapped += 1
                elif new_valid:
                    row = self._overlays.rows.get(old - 1)
                    if row is None:
                        # The leaf's reference on the old chunk passes to the new overlay.
                        self._overlays.set(target, old - 1, new_valid)
                    else:
                        self._overlays.set(target, row[0], new_valid)
                        self._data.inc(row[0])
                        self._drop_chunk(old - 1)
                else:
                    self._drop_chunk(old - 1)
            self._touch(device)
        return any(leaf is not None or new_valid for *_, leaf, new_valid in plan)

    def _redirect_valid(self, entry: int, in_offset: int, length: int) -> int:
        """The valid blocks of the overlay a redirected write makes, or 0 for a whole chunk
        (nothing to keep, or every block would be valid). Redirecting an overlay makes an
        overlay of the same base, with the old overlay's blocks carried over."""
        if not entry:
            return 0
        valid = overlays.block_mask(self._block, in_offset, length)
        row = self._overlays.rows.get(entry - 1)
        if row is not None:
            valid |= row[1]
        return 0 if valid == overlays.FULL else valid

    def _extend_overlay(self, chunk: int, new_valid: int) -> None:
        """Mark blocks of an unshared overlay valid; at full it becomes a plain chunk."""
        base, valid = self._overlays.rows[chunk]
        valid |= new_valid
        if valid == overlays.FULL:
            self._overlays.remove(chunk)
            self._drop_chunk(base)
        else:
            self._overlays.set(chunk, base, valid)
        self._dirty = True

    def _drop_chunk(self, chunk: int) -> None:
        """Drop one reference to a chunk; at zero free it, and its overlay's hold on a base."""
        if not self._data.dec(chunk):
            self._data.release(chunk)
            base = self._overlays.remove(chunk)
            if base is not None:
                self._drop_chunk(base)

    def _exclusive_leaf(self, device: Device, height: int, vchunk: int):
        """The leaf for ``vchunk`` if no node above it is shared, else None."""
        node_id = device.root
        nodes = self._nodes
        if not node_id or nodes.count(node_id) != 1:
            return None
        for level in range(height - 1, 0, -1):
            node_id = nodes.get(node_id).entries[(vchunk >> (nodes.bits * level)) & nodes.mask]
            if not node_id or nodes.count(node_id) != 1:
                return None
        return _WritableLeaf(nodes.get(node_id), node_id, nodes)

    def _release_new(self, plan) -> None:
        for _, _, _, target, _, leaf, _ in plan:
            if leaf is not None:
                self._data.release(target)

    def _write_data(self, plan) -> None:
        """Write each planned piece: in place, into a fresh chunk, as an overlay, or redirected
        whole with the old chunk's other bytes.

        One ``pwrite`` per chunk, never one across chunks: the page cache sizes a folio by
        the write that creates it, and a small overwrite later walks every block of its
        folio (ext4 with large folios), so chunk-sized folios keep 4 KiB writes cheap.
        """
        size = self.chunk_size
        for _, in_offset, piece, target, old, leaf, new_valid in plan:
            position = target * size + in_offset
            if new_valid:
                if leaf is not None:
                    self._carry_blocks(old - 1, target, in_offset, len(piece))
                # Overlay blocks are written whole; a partly written block gets the rest of
                # its bytes from what the old chunk shows there.
                in_offset, piece = self._whole_blocks(old - 1, in_offset, piece)
                position = target * size + in_offset
            elif leaf is not None and old and len(piece) < size:
                merged = bytearray(size)
                self._read_chunk(old - 1, 0, memoryview(merged))
                merged[in_offset : in_offset + len(piece)] = piece
                position, piece = target * size, merged
            self._chunks.write(position, piece)

    def _carry_blocks(self, old: int, target: int, in_offset: int, length: int) -> None:
        """Copy an old overlay's valid blocks that a write does not cover to its successor."""
        with self._lock:
            row = self._overlays.rows.get(old)
        if row is None:
            return
        size = self.chunk_size
        carry = row[1] & ~overlays.block_mask(self._block, in_offset, length)
        for start, end, valid in overlays.segments(self._block, carry, 0, size):
            if valid:
                blocks = memoryview(bytearray(end - start))
                self._chunks.readinto(old * size + start, blocks)
                self._chunks.write(target * size + start, blocks)

    def _whole_blocks(self, source: int, in_offset: int, piece) -> tuple[int, object]:
        """``piece`` widened to whole overlay blocks, the edges read from chunk ``source``."""
        block = self._block
        end = in_offset + len(piece)
        low, high = in_offset // block * block, -(-end // block) * block
        if low == in_offset and high == end:
            return in_offset, piece
        widened = memoryview(bytearray(high - low))
        if low < in_offset:
            self._read_chunk(source, low, widened[:block])
        if high > end:
            self._read_chunk(source, high - block, widened[-block:])
        widened[in_offset - low : end - low] = piece
        return low, widened

    def discard(self, name: str, offset: int, length: int) -> None:
        """Unmap a range; it reads as zeros afterwards (also the way to write zeros)."""
        device = self._device(name)
        self._check_io(device, offset, length)
        if device.kind != VOLUME:
            raise exception.ReadOnlyDevice(name=name)
        if not length:
            return
        size = self.chunk_size
        with device.lock.write():
            self._require_alive(device)
            head_end = min(offset + length, -(-offset // size) * size)
            if head_end > offset:
                self._zero_partial(device, offset, head_end - offset)
            tail_start = max(head_end, (offset + length) // size * size)
            if tail_start < offset + length:
                self._zero_partial(device, tail_start, offset + length - tail_start)
            first, end = -(-offset // size), (offset + length) // size
            if end > first:
                with self._lock:
                    self._unmap(device, first, end)

    def _zero_partial(self, device: Device, offset: int, length: int) -> None:
        size = self.chunk_size
        with self._lock:
            entries = lookup_run(
                self._nodes, device.root, self._height(device.size), offset // size, 1
            )
        if entries[0]:
            self._write_locked(device, offset, memoryview(bytes(length)))

    def _unmap(self, device: Device, first: int, end: int) -> None:
        """Unmap whole chunks [first, end), skipping empty leaves; drop emptied nodes."""
        height = self._height(device.size)
        mask = self._nodes.mask
        vchunk = first
        while vchunk < end:
            leaf_end = min(end, (vchunk | mask) + 1)
            first_slot, last_slot = vchunk & mask, (leaf_end - 1) & mask
            leaf = find_leaf(self._nodes, device.root, height, vchunk) if device.root else None
            if leaf is None or not any(leaf.entries[first_slot : last_slot + 1]):
                vchunk = leaf_end
                continue
            path = writable_path(self._nodes, device.root, height, vchunk)
            device.root = path[0]
            entries = self._nodes.get(path[-1]).entries
            for slot in range(first_slot, last_slot + 1):
                entry = entries[slot]
                if entry:
                    entries[slot] = 0
                    device.mapped -= 1
                    self._drop_chunk(entry - 1)
            device.root = prune(self._nodes, path, vchunk)
            self._touch(device)
            vchunk = leaf_end

    def write_zeroes(self, name: str, offset: int, length: int) -> None:
        """Make a range read as zeros."""
        self.discard(name, offset, length)

    def flush(self) -> None:
        """Make every write that returned before this call durable."""
        if self._dirty:
            self._commit()
        else:
            self._chunks.sync()

    # -- commit, collection, checking ------------------------------------------------------
    def commit(self) -> None:
        """Write all pending metadata (data first); what ``flush`` does when metadata changed."""
        self._commit()

    def _commit(self) -> None:
        # Write the dirty data out before taking the lock, so writers are not stalled by
        # the bulk of it; the sync inside the commit then only covers what came since.
        self._chunks.sync()
        with self._lock:
            self._commit_locked()

    def _commit_locked(self) -> None:
        self._chunks.sync()  # data before the metadata that maps it
        nodes = self._nodes
        change = Change()
        change.nodes = [(i, nodes.cache[i].level, nodes.cache[i].body()) for i in nodes.dirty]
        change.deleted_nodes = list(nodes.deleted)
        change.garbage = [i for i in nodes.new_garbage if i in nodes.garbage]
        change.pages = [("data", n, self._data.page_bytes(n)) for n in self._data.dirty_pages]
        change.pages += [("node", n, nodes.refs.page_bytes(n)) for n in nodes.refs.dirty_pages]
        change.overlays, change.gone_overlays = self._overlays.changes()
        change.devices = [self._by_id[i].row() for i in self._dirty_devices if i in self._by_id]
        change.deleted_devices = list(self._deleted_devices)
        change.settings = {
            "data_high_water": self._data.high_water,
            "node_high_water": nodes.refs.high_water,
            "next_device_id": self._next_device_id,
        }
        self._meta.save(change)
        nodes.dirty.clear()
        nodes.deleted.clear()
        nodes.new_garbage.clear()
        self._data.dirty_pages.clear()
        nodes.refs.dirty_pages.clear()
        self._overlays.dirty.clear()
        self._dirty_devices.clear()
        self._deleted_devices.clear()
        self._dirty = False
        self._last_commit = time.monotonic()
        # Only now may freed space be reused: the committed metadata no longer points at it.
        self._chunks.zero_chunks(self._data.take_pending())
        self._data.recycle()
        nodes.refs.recycle()

    def _background(self) -> None:
        """Commit about once a commit interval and collect garbage a batch at a time."""
        while not self._stop.wait(min(self._commit_interval, 0.25)):
            try:
                collected, more = collector.collect_batch(self, budget=64)
                due = time.monotonic() - self._last_commit >= self._commit_interval
                # Commit when due, or at once when collection just finished: freed space
                # becomes reusable only after a commit.
                if self._dirty and (due or (collected and not more)):
                    self._commit()
            except Exception:  # keep the pool usable; the next commit retries
                LOG.exception("Background commit of pool %s failed", self.path)

    def collect(self) -> None:
        """Free everything deleted devices held alone, now, and commit."""
        while collector.collect_batch(self, budget=1024)[1]:
            pass
        self.commit()

    def check(self) -> CheckReport:
        """Commit, then verify every reference count and pointer of the committed metadata."""
        with self._lock:
            self._commit_locked()
            return checker.check(self._meta)

    def _check_committed(self) -> CheckReport:
        """Verify the committed metadata as it is on disk, without committing first."""
        with self._lock:
            return checker.check(self._meta)

    # -- accounting ---------------------------------------------------------------------------
    def exclusive_bytes(self, name: str) -> int:
        """Bytes only this device refers to: what deleting it would free."""
        device = self._device(name)
        with device.lock.read(), self._lock:
            nodes, data = self._nodes, self._data
            stack = [device.root] if device.root and nodes.count(device.root) == 1 else []
            chunks = 0
            while stack:
                node = nodes.get(stack.pop())
                if node.level:
                    stack.extend(c for c in node.entries if c and nodes.count(c) == 1)
                else:
                    for entry in node.entries:
                        if entry and data.get(entry - 1) == 1:
                            chunks += 1
                            # A base only this overlay holds goes with it.
                            row = self._overlays.rows.get(entry - 1)
                            chunks += bool(row and data.get(row[0]) == 1)
            return chunks * self.chunk_size

    def usage(self) -> PoolUsage:
        """Total, used and free bytes of the pool and what is provisioned in it."""
        with self._lock:
            used = self._data.used * self.chunk_size
            volumes = [d for d in self._devices.values() if d.kind == VOLUME]
            return PoolUsage(
                total_bytes=self.capacity,
                used_bytes=used,
                free_bytes=self.capacity - used,
                metadata_bytes=self._meta.size_bytes(),
                provisioned_bytes=sum(d.size for d in volumes),
                volumes=len(volumes),
                snapshots=len(self._devices) - len(volumes),
                chunk_size=self.chunk_size,
            )

    @property
    def garbage_nodes(self) -> int:
        """Nodes of deleted devices not yet collected."""
        return len(self._nodes.garbage)


class _WritableLeaf:
    """A leaf reached through unshared nodes only: safe to modify once marked dirty."""

    __slots__ = ("node", "node_id", "nodes", "entries")

    def __init__(self, node, node_id, nodes):
        self.node, self.node_id, self.nodes = node, node_id, nodes
        self.entries = node.entries

    def mark_dirty(self) -> None:
        self.nodes.dirty.add(self.node_id)
