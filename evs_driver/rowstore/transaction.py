"""The transaction: the only code that commits a pool's metadata.

Each state owner (the nodes, the data map, the device table) hands over what changed since
the last commit; this module writes it as one SQLite transaction and tells each owner it is
stored. Invariants kept here:
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
import logging
import time

from evs_driver import exception
from evs_driver.rowstore.chunkstore import ChunkStore
from evs_driver.rowstore.metastore import Change, MetaStore
from evs_driver.rowstore.spacemap import SpaceMap
from evs_driver.rowstore.state import PoolState

LOG = logging.getLogger(__name__)
OUTSIDE_SYNCS = 3  # data syncs a commit makes at most before it takes the lock
QUICK_SYNC = 0.02  # seconds: a data sync this short leaves little for the one in the lock


def committed_node_space(meta: MetaStore, name: str, garbage: set[int]) -> SpaceMap:
    """The committed reference counts of the metadata nodes (``garbage`` is not free)."""
    return SpaceMap(
        name,
        meta.pages("node"),
        int(meta.settings()["node_high_water"]),
        None,
        busy={node_id - 1 for node_id in garbage},
    )


class Transaction:
    """Commits a pool's metadata in memory under the lock that guards it."""

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

    def commit(self) -> None:
        """Write all pending metadata, data first."""
        # Write the dirty data out before taking the lock, so writers are not stalled by
        # the bulk of it; the sync inside the commit then only covers what came since.
        # Writers keep writing meanwhile, so sync again while a pass took long: under
        # random writes one pass took 0.5 s and left 0.1-0.3 s for the sync in the lock.
        for _ in range(OUTSIDE_SYNCS):
            started = time.monotonic()
            self._chunks.sync()
            if time.monotonic() - started < QUICK_SYNC:
                break
        with self.lock:
            self.commit_locked()

    def commit_locked(self, closing: bool = False) -> None:
        """``commit`` for a caller that holds ``lock``; ``closing``: the last one, which
        gives the clean mark back when it can."""
        freeing = bool(self._state.datamap.freed())
        if not self.pending() and not freeing:
            if closing:
                self._mark_clean()
            return
        self._chunks.sync()  # data before the metadata that maps it
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
        if freeing and self.marked_clean:
            change.settings["clean"] = 0  # the freed chunks are zeroed only after this
        elif closing and not freeing and self._free_is_zero and not self.marked_clean:
            change.settings["clean"] = 1  # the data sync above made every zeroing durable
        self._meta.save(change)
        self.marked_clean = bool(change.settings.get("clean", self.marked_clean))
        self._state.nodes.committed()
        self._state.datamap.committed()
        self._state.devices.committed()
        self.last_commit = time.monotonic()
        self._meta.sync()  # when this fails, the freed chunks wait for a later commit
        # Only now may freed chunks be reused: the durable metadata no longer maps them.
        try:
            self._chunks.zero_chunks(self._state.datamap.freed())
        except exception.EVSError as err:  # the commit stands; a later one zeroes them
            LOG.warning("Pool %s keeps freed chunks unusable for now: %s", self.name, err)
        else:
            self._state.datamap.reuse_freed()
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
