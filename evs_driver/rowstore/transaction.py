"""The transaction: the only code that commits a pool's metadata.

Each state owner (the nodes, the data map, the device table) hands over what changed since
the last commit, all at one instant under the pool's lock; this module writes it as one
SQLite transaction and tells each owner it is stored, or, when that failed, gives it back to
be stored by the next. Invariants kept here:
- data is synced before the metadata that maps it commits;
- space freed in a transaction is reused only after it commits: freed nodes are recycled
  once SQLite has the transaction (its log keeps transactions in order), and freed chunks
  are zeroed and handed back only once that transaction is durable, since a crash before
  then would bring back metadata that still maps them;
- a control operation is a transaction of its own: what was pending commits first, so when
  the operation or its commit fails the committed metadata is the state it started from,
  and what it changed (devices and nodes only, never data chunks) is read back from there;
- the stored clean mark (``clean=1``) promises that every free chunk reads as zeros: it is
  taken away (durably) before the first write into a newly allocated chunk and in the
  commit that first frees chunks, and given back only when the promise holds again. So a
  pool that is opened, read, snapshotted or closed writes no mark at all, and a pool whose
  mark is missing (a crash) zeroes its free chunks before it allocates one.
"""

import contextlib
import dataclasses
import logging
import threading
import time

from evs_driver import exception
from evs_driver.rowstore.chunkstore import ChunkStore
from evs_driver.rowstore.metastore import Change, MetaStore
from evs_driver.rowstore.nodes import HandedNodes
from evs_driver.rowstore.spacemap import SpaceMap
from evs_driver.rowstore.state import PoolState

LOG = logging.getLogger(__name__)


def committed_node_space(meta: MetaStore, name: str, garbage: set[int]) -> SpaceMap:
    """The committed reference counts of the metadata nodes (``garbage`` is not free)."""
    return SpaceMap(
        name,
        meta.pages("node"),
        int(meta.settings()["node_high_water"]),
        None,
        busy={node_id - 1 for node_id in garbage},
    )


@dataclasses.dataclass(slots=True)
class Handed:
    """The changes one commit took, with what each owner needs back when it ends."""

    change: Change
    nodes: HandedNodes
    data: tuple
    devices: tuple
    freed: list[int]  # chunks to zero and reuse once the change is durable


class Transaction:
    """Commits a pool's metadata in memory: one commit at a time, each taking every change
    made before it under the lock that guards them."""

    def __init__(
        self, name: str, state: PoolState, meta: MetaStore, chunks: ChunkStore, clean: bool
    ):
        """``clean``: the stored clean mark."""
        self.name = name
        self.lock = state.lock
        self._state = state
        self._meta = meta
        self._chunks = chunks
        self.last_commit = time.monotonic()
        self._storing = False  # a commit took its changes and is storing them
        self._stored = threading.Condition(self.lock)
        #: What the stored clean mark says (read by tests of the crash rules).
        self.marked_clean = clean
        self._free_is_zero = clean  # what is true: every free chunk reads as zeros

    def pending(self) -> bool:
        """True when memory holds metadata changes the last commit did not store."""
        return (
            self._state.nodes.pending()
            or self._state.datamap.pending()
            or self._state.devices.pending()
        )

    def commit(self) -> bool:
        """Make every metadata change made before this call durable, data first; return
        whether there was one to store. The changes are taken under the lock; the data
        sync and the metadata write, which take the time, run outside it, so writers go on
        meanwhile (what they change waits for the next commit)."""
        with self.lock:
            handed = self._hand_over()
        if handed is not None:
            self._store(handed)
        elif self._meta.unsynced:  # stored by a commit whose metadata sync failed
            self._meta.sync()
        return handed is not None

    def flush(self) -> None:
        """Make every write that returned before this call durable: its data, and the
        metadata that maps it."""
        if not self.commit():
            self._chunks.sync()

    def commit_locked(self, closing: bool = False) -> None:
        """``commit`` for a caller that holds ``lock`` and keeps it throughout; ``closing``:
        the last one, which gives the clean mark back when it can."""
        handed = self._hand_over()
        if handed is not None:
            self._store(handed, closing)
        elif closing:
            self._mark_clean()

    def wait_stored(self) -> None:
        """Under ``lock``: return once no commit is storing (the lock is let go meanwhile),
        so the stored metadata is a whole generation and nothing is handed over; while the
        caller keeps the lock, no commit starts."""
        while self._storing:
            self._stored.wait()

    def _hand_over(self) -> "Handed | None":
        """Take every owner's changes (under ``lock``), once no other commit is storing;
        None when there is nothing to store."""
        self.wait_stored()  # commits store in order, each what came before it
        freed = self._state.datamap.freed()
        if not self.pending() and not freed:
            return None
        nodes = self._state.nodes.changes()
        data_pages, overlays, gone_overlays = self._state.datamap.changes()
        devices, deleted_devices = self._state.devices.changes()
        change = Change()
        change.nodes = nodes.rows
        change.deleted_nodes = nodes.deleted
        change.garbage = nodes.garbage
        change.pages = [("data", n, blob) for n, blob in data_pages]
        change.pages += [("node", n, blob) for n, blob in nodes.pages]
        change.overlays, change.gone_overlays = overlays, gone_overlays
        change.devices, change.deleted_devices = devices, deleted_devices
        change.settings = {
            "data_high_water": self._state.datamap.high_water,
            "node_high_water": nodes.high_water,
            "next_device_id": self._state.devices.next_id,
        }
        if freed and self.marked_clean:
            change.settings["clean"] = 0  # the freed chunks are zeroed only after this
        self._storing = True
        return Handed(
            change,
            self._state.nodes.hand_over(),
            self._state.datamap.hand_over(),
            self._state.devices.hand_over(),
            freed,
        )

    def _store(self, handed: "Handed", closing: bool = False) -> None:
        """Sync the data ``handed`` maps, then store and sync it; its freed chunks become
        reusable once that is durable. Takes ``lock`` only to update memory; the next
        commit takes its changes once this one has ended."""
        try:
            try:
                # Everything ``handed`` maps was written before it was taken.
                self._chunks.sync()
                if closing and not handed.freed and self._free_is_zero and not self.marked_clean:
                    handed.change.settings["clean"] = 1  # the sync made every zeroing durable
                self._meta.save(handed.change)
            except BaseException:
                with self.lock:
                    self._state.nodes.take_back(handed.nodes)
                    self._state.datamap.take_back(handed.data)
                    self._state.devices.take_back(handed.devices)
                raise
            with self.lock:
                self.marked_clean = bool(handed.change.settings.get("clean", self.marked_clean))
                self._state.nodes.stored(handed.nodes)
                self.last_commit = time.monotonic()
            self._meta.sync()  # when this fails, the freed chunks wait for a later commit
            self._reuse(handed.freed, closing)
        finally:
            with self.lock:
                self._storing = False
                self._stored.notify_all()

    def _reuse(self, freed: list[int], closing: bool) -> None:
        """Zero the chunks a durable commit freed and let them be allocated again."""
        try:
            self._chunks.zero_chunks(freed)
        except exception.EVSError as err:  # the commit stands; a later one zeroes them
            LOG.warning("Pool %s keeps freed chunks unusable for now: %s", self.name, err)
            return
        with self.lock:
            self._state.datamap.reuse_freed(len(freed))
            if closing:
                self._mark_clean()

    # -- the clean mark --------------------------------------------------------------------
    def before_allocating(self) -> None:
        """Call under ``lock`` before a chunk is allocated: its data is written before any
        commit maps it, so a crash must not find the mark that says free chunks are zero."""
        if not self._free_is_zero:
            self._zero_free_chunks()
        if self.marked_clean:
            self._save_mark(False)

    def _zero_free_chunks(self) -> None:
        """After a crash, free chunks may hold data of writes that never committed."""
        LOG.warning("Pool %s was not closed cleanly; zeroing its free chunks", self.name)
        datamap, size = self._state.datamap, self._state.geometry.chunk_size
        self._chunks.zero_chunks(datamap.free_chunks())
        beyond, capacity = datamap.high_water * size, self._state.geometry.capacity
        if beyond < capacity:
            self._chunks.zero(beyond, capacity - beyond)
        self._chunks.sync()
        self._free_is_zero = True

    def _mark_clean(self) -> None:
        """Give the clean mark back if every free chunk reads as zeros, durably."""
        if self.marked_clean or not self._free_is_zero or self._state.datamap.freed():
            return
        self._chunks.sync()  # the zeroing of the last freed chunks
        self._save_mark(True)

    def _save_mark(self, clean: bool) -> None:
        change = Change()
        change.settings["clean"] = int(clean)
        self._meta.save(change)
        self._meta.sync()
        self.marked_clean = clean

    @contextlib.contextmanager
    def control(self):
        """Run a control operation under ``lock`` as a transaction of its own.

        A control operation that raises, or whose commit fails, has had no effect.
        """
        with self.lock:
            # Its undo returns to the stored metadata, so none of it may be on the way.
            self.wait_stored()
            if self.pending():
                self.commit_locked()  # when this fails the operation has not started
            point = self._state.devices.save_point()
            try:
                yield
                self.commit_locked()
            except BaseException:
                if self.pending():
                    self._undo(point)
                raise

    def _undo(self, point) -> None:
        garbage = self._meta.garbage()
        space = committed_node_space(self._meta, f"{self.name} metadata", garbage)
        self._state.nodes.discard_changes(space, garbage)
        self._state.devices.restore(point)
