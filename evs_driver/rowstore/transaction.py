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
  and what it changed (devices and nodes only, never data chunks) is read back from there.
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

    def __init__(self, name: str, state: PoolState, meta: MetaStore, chunks: ChunkStore):
        self.name = name
        self.lock = state.lock
        self._state = state
        self._meta = meta
        self._chunks = chunks
        self.last_commit = time.monotonic()

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
        self._chunks.sync()
        with self.lock:
            self.commit_locked()

    def commit_locked(self) -> None:
        """``commit`` for a caller that holds ``lock``."""
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
        self._meta.save(change)
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

    def save_settings(self, **settings) -> None:
        """Store pool settings (the clean-shutdown mark) in a transaction of their own."""
        change = Change()
        change.settings.update(settings)
        self._meta.save(change)
        self._meta.sync()

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
