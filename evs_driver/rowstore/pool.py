"""A pool: volumes and snapshots as redirect-on-write trees over one chunk store.

This module is the facade: it creates, opens, upgrades, recovers and closes a pool, runs the
background thread, and hands each call to its layer. The layers, each knowing only those
below it (dm persistent-data's shape):

    directory, chunkstore, metastore        the pool's files
    spacemap -> nodes -> tree               reference counts and copy-on-write trees
    datamap, devicetable                    chunk and overlay counts; devices
    transaction, collector                  the only committer; freeing deleted trees
    readpath -> writepath -> discard        the data path
    control, accounting                     control operations; space figures

Concurrency: the metadata lock (one per pool) guards all metadata in memory and is never
held across data I/O except by a control operation's commit (a background or flush commit
takes the changes under it and syncs and stores them outside it); each device has a reader-writer lock
so reads of a device run in parallel while its writes, discards and control operations are
serialized. Crash rules: see ``transaction`` and ``writepath``; after an unclean shutdown
every free chunk is zeroed before the first chunk is allocated, so the chunks handed out
always read as zeros. Opening, reading and closing a pool write nothing.
"""

import logging
import os
import threading
import time

from evs_driver import exception
from evs_driver.blockdev import Extents
from evs_driver.reports import CheckReport
from evs_driver.rowstore import checker, collector, directory
from evs_driver.rowstore.accounting import Accounting, PoolUsage
from evs_driver.rowstore.chunkstore import ChunkStore, new_pool_id
from evs_driver.rowstore.control import ControlOperations
from evs_driver.rowstore.crossdevice import CrossDeviceCalls, Differ, GroupOperations
from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.devicetable import Device, DeviceInfo, DeviceTable
from evs_driver.rowstore.discard import Discarder
from evs_driver.rowstore.disk import REAL, Disk
from evs_driver.rowstore.geometry import DEFAULT_BITS, DEFAULT_CHUNK_SIZE, Geometry
from evs_driver.rowstore.groupcommit import GroupCommit
from evs_driver.rowstore.lockfile import PoolLock
from evs_driver.rowstore.metastore import FORMAT_VERSION, MetaStore, new_pool_settings
from evs_driver.rowstore.nodes import DEFAULT_CACHE_BYTES, NodeStore
from evs_driver.rowstore.overlays import Overlays
from evs_driver.rowstore.readpath import ReadPath
from evs_driver.rowstore.spacemap import SpaceMap
from evs_driver.rowstore.state import PoolState
from evs_driver.rowstore.transaction import Transaction, committed_node_space
from evs_driver.rowstore.writepath import WritePath

LOG = logging.getLogger(__name__)


class Pool(CrossDeviceCalls):
    """Volumes and snapshots in one directory. Use ``Pool.create`` or ``Pool.open``."""

    def __init__(
        self,
        path: str,
        commit_interval: float = 1.0,
        background: bool = True,
        disk: Disk = REAL,
        node_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        """Open an existing pool (see ``open``).

        ``background=False`` runs no worker thread: metadata then commits only on flush and
        control operations, and garbage is collected only by ``collect`` (deterministic tests).
        ``disk`` is the I/O seam every write and sync goes through (tests record it).
        ``node_cache_bytes`` bounds the memory of the metadata nodes kept in memory.
        """
        self.path = os.path.abspath(path)
        self._disk = disk
        self._node_cache_bytes = node_cache_bytes
        meta_path = os.path.join(self.path, directory.META_FILE)
        if not os.path.exists(meta_path):
            raise exception.InvalidPool(path=self.path, reason=f"{directory.META_FILE} is missing")
        self._pool_lock = PoolLock(os.path.join(self.path, directory.LOCK_FILE), self.path)
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
        disk: Disk = REAL,
        node_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> "Pool":
        """Create a pool of ``capacity`` bytes (rounded down to whole chunks) in a new directory.

        ``node_bits`` sets the tree's fan-out (2**bits); tests use small ones to get deep trees.
        """
        geometry = Geometry.new(capacity, chunk_size, node_bits)
        path = os.path.abspath(path)
        directory.make_private_directory(path)
        meta_path = os.path.join(path, directory.META_FILE)
        if os.path.exists(meta_path):
            raise exception.AlreadyExists(kind="Pool", name=path)
        lock = PoolLock(os.path.join(path, directory.LOCK_FILE), path)
        try:
            pool_id = new_pool_id()
            # The data file first: the metadata, which makes this a pool, names it.
            data_path = os.path.join(path, directory.DATA_FILE)
            ChunkStore.create(data_path, chunk_size, geometry.capacity_chunks, pool_id, disk)
            MetaStore.create(meta_path, path, new_pool_settings(geometry, pool_id), disk)
        finally:
            lock.release()
        return cls(path, commit_interval, background, disk, node_cache_bytes)

    @classmethod
    def open(cls, path: str, **options) -> "Pool":
        """Open a pool (``options``: the constructor's); ``PoolBusy`` when another process
        has it open."""
        return cls(path, **options)

    def _load(self, meta_path: str) -> None:
        directory.make_private(self.path)
        directory.require_writable(self.path)
        self._meta = MetaStore.open(meta_path, self.path, self._disk)
        try:
            version = self._meta.format_version()
            settings = self._meta.settings()
            self._geometry = Geometry(
                int(settings["chunk_size"]),
                int(settings["node_bits"]),
                int(settings["capacity_chunks"]),
            )
            self._chunks = ChunkStore(
                os.path.join(self.path, directory.DATA_FILE),
                self._geometry.chunk_size,
                self._geometry.capacity_chunks,
                self.path,
                self._disk,
            )
        except BaseException:
            self._meta.close()
            raise
        try:
            self._pool_id = settings.get("pool_id")
            if self._pool_id:
                self._chunks.verify_identity(self._pool_id)
            if version < FORMAT_VERSION:
                upgrade = {}
                if not self._pool_id:  # format 3 names the data file; stamp it first
                    self._pool_id = upgrade["pool_id"] = new_pool_id()
                    self._chunks.stamp(self._pool_id)
                self._meta.upgrade(upgrade)
            self._build_layers(settings)
        except BaseException:
            self._chunks.close()
            self._meta.close()
            raise

    def _build_layers(self, settings: dict) -> None:
        geometry, meta, chunks = self._geometry, self._meta, self._chunks
        data_space = SpaceMap(
            self.path,
            meta.pages("data"),
            int(settings["data_high_water"]),
            geometry.capacity_chunks,
        )
        garbage = meta.garbage()
        node_space = committed_node_space(meta, f"{self.path} metadata", garbage)
        self._nodes = NodeStore(
            meta.node, node_space, data_space, garbage, geometry.node_bits, self._node_cache_bytes
        )
        self._datamap = DataMap(data_space, Overlays(meta.overlays()), geometry.block_size)
        self._devices = DeviceTable(meta.devices(), int(settings["next_device_id"]))
        state = PoolState(geometry, threading.RLock(), self._nodes, self._datamap, self._devices)
        self._lock = state.lock
        clean = int(settings.get("clean", 0)) == 1
        self._transaction = Transaction(self.path, state, meta, chunks, clean)
        self._reader = ReadPath(state, chunks)
        self._writer = WritePath(state, chunks, self._reader, self._transaction)
        self._discarder = Discarder(state, self._writer)
        self._control = ControlOperations(state, self._transaction)
        self._groups, self._differ = GroupOperations(state, self._transaction), Differ(state)
        self._accounting = Accounting(state, meta)
        self._group = GroupCommit(self._transaction.flush)

    def close(self) -> None:
        """Commit everything, mark the pool cleanly closed (if it is not marked so already)
        and release it.

        When the commit fails the pool is still closed and released, but not marked clean
        (the next open recovers), and the error is raised.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join()
        try:
            with self._lock:
                self._transaction.commit_locked(closing=True)
        finally:
            self._chunks.close()
            self._meta.close()
            self._pool_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what the pool is ------------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        """Bytes per chunk."""
        return self._geometry.chunk_size

    @property
    def capacity(self) -> int:
        """Bytes of data the pool can hold."""
        return self._geometry.capacity

    @property
    def capacity_chunks(self) -> int:
        """Chunks the pool can hold."""
        return self._geometry.capacity_chunks

    # -- devices ------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        """True when a volume or snapshot of this name exists."""
        return self._devices.exists(name)

    def device(self, name: str) -> DeviceInfo:
        """Describe one volume or snapshot."""
        with self._lock:
            return self._devices.info(self._devices.get(name), self.chunk_size)

    def devices(self) -> list[DeviceInfo]:
        """Every volume and snapshot, oldest first."""
        with self._lock:
            return [self._devices.info(d, self.chunk_size) for d in self._devices.all()]

    def create_volume(self, name: str, size: int) -> DeviceInfo:
        """Create an empty thin volume of ``size`` bytes."""
        return self._control.create_volume(name, size)

    def create_snapshot(self, volume: str, name: str) -> DeviceInfo:
        """Share the volume's current tree under a read-only name: O(1), no data copied."""
        return self._control.create_snapshot(volume, name)

    def clone(self, source: str, name: str, size: int | None = None) -> DeviceInfo:
        """Create a volume sharing every chunk of ``source`` (a snapshot or a volume)."""
        return self._control.clone(source, name, size)

    def revert(self, volume: str, snapshot: str) -> None:
        """Give ``volume`` the content of one of its snapshots; every snapshot is kept."""
        self._control.revert(volume, snapshot)

    def extend(self, name: str, size: int) -> None:
        """Grow a volume to ``size`` bytes; new space reads as zeros."""
        self._control.extend(name, size)

    def delete(self, name: str) -> None:
        """Remove a volume or snapshot; its exclusive chunks are freed by the collector."""
        self._control.delete(name)

    # -- data -----------------------------------------------------------------------------
    def _checked(self, name: str, offset: int, length: int, writing: bool = False) -> Device:
        device = self._devices.get(name)
        device.check_range(offset, length, writing)
        return device

    def read(self, name: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``; unwritten ranges read as zeros."""
        self._checked(name, offset, length)
        buf = bytearray(length)
        self.readinto(name, offset, buf)
        return bytes(buf)

    def readinto(self, name: str, offset: int, buf) -> None:
        """Fill ``buf`` with the bytes at ``offset``."""
        view = memoryview(buf).cast("B")
        device = self._checked(name, offset, len(view))
        if len(view):
            self._reader.readinto(device, offset, view)

    def extents(self, name: str, offset: int, length: int) -> Extents:
        """Which chunks of the range the device maps, as ``BlockDevice.extents`` runs."""
        device = self._checked(name, offset, length)
        return self._reader.extents(device, offset, length) if length else []

    def copy_to_file(self, name: str, offset: int, length: int, fd: int) -> bool:
        """Copy a range of a device into the regular file ``fd`` at the same offsets, its
        chunks inside the kernel; False (maybe part done) when the kernel cannot."""
        device = self._checked(name, offset, length)
        return self._reader.copy_to_file(device, offset, length, fd) if length else True

    def write(self, name: str, offset: int, data, fua: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``fua`` it is durable when this returns."""
        view = memoryview(data).cast("B")
        device = self._checked(name, offset, len(view), writing=True)
        if not len(view):
            return
        self._writer.write(device, offset, view)
        if fua:
            self.flush()

    def discard(self, name: str, offset: int, length: int) -> None:
        """Unmap a range; it reads as zeros afterwards (also the way to write zeros)."""
        device = self._checked(name, offset, length, writing=True)
        if length:
            self._discarder.discard(device, offset, length)

    def write_zeroes(self, name: str, offset: int, length: int) -> None:
        """Make a range read as zeros."""
        self.discard(name, offset, length)

    def flush(self) -> None:
        """Make every write that returned before this call durable; concurrent flushes
        (FUA writes, other connections, the background commit) share one round of syncs."""
        self._group.flush()

    # -- commit, collection, checking ------------------------------------------------------
    def commit(self) -> None:
        """Write all pending metadata (data first); what ``flush`` does when metadata changed."""
        self._transaction.commit()

    def _background(self) -> None:
        """Commit about once a commit interval and collect garbage a batch at a time."""
        failing = False
        while not self._stop.wait(min(self._commit_interval, 0.25)):
            try:
                with self._lock:
                    collected, more = collector.collect_batch(self._nodes, self._datamap, 64)
                due = time.monotonic() - self._transaction.last_commit >= self._commit_interval
                # Commit when due, or at once when collection just finished: freed space
                # becomes reusable only after a commit.
                if self._transaction.pending() and (due or (collected and not more)):
                    self._group.flush()
                failing = False
            except exception.EVSError as err:  # e.g. a full file system: retried, said once
                if not failing:
                    LOG.warning(
                        "Background commit of pool %s failed, will retry: %s", self.path, err
                    )
                failing = True
            except Exception:  # keep the pool usable; the next commit retries
                LOG.exception("Background commit of pool %s failed", self.path)

    def collect(self) -> None:
        """Free everything deleted devices held alone, now, and commit."""
        more = True
        while more:
            with self._lock:
                more = collector.collect_batch(self._nodes, self._datamap, 1024)[1]
        self.commit()

    def check(self) -> CheckReport:
        """Commit, then verify the data file and every reference count and pointer of the
        committed metadata."""
        with self._lock:
            self._transaction.commit_locked()
            return self.check_committed()

    def check_committed(self) -> CheckReport:
        """Verify the data file and the committed metadata as they are, without committing."""
        with self._lock:
            self._transaction.wait_stored()  # not half a commit's rows
            report = checker.check(self._meta)
            problems = self._chunks.problems(self._pool_id)
            return CheckReport(tuple(problems) + report.problems, report.summary)

    # -- accounting ---------------------------------------------------------------------------
    def exclusive_bytes(self, name: str) -> int:
        """Bytes only this device refers to: what deleting it would free."""
        return self._accounting.exclusive_bytes(self._devices.get(name))

    def usage(self) -> PoolUsage:
        """Total, used and free bytes of the pool and what is provisioned in it."""
        return self._accounting.usage()

    @property
    def garbage_nodes(self) -> int:
        """Nodes of deleted devices not yet collected."""
        return self._nodes.garbage_count
