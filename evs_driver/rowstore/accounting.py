"""Accounting: what the pool holds, and what deleting one device would free.

Invariant: figures are computed from the tree and the data map under the metadata lock, so
they describe one consistent state (committed or not).
"""

import dataclasses

from evs_driver.rowstore import tree
from evs_driver.rowstore.devicetable import VOLUME, Device
from evs_driver.rowstore.metastore import MetaStore
from evs_driver.rowstore.state import PoolState


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    """Pool-wide space, in bytes."""

    total_bytes: int
    used_bytes: int
    free_bytes: int
    metadata_bytes: int
    provisioned_bytes: int
    volumes: int
    snapshots: int
    chunk_size: int


class Accounting:
    """Space figures of one pool."""

    def __init__(self, state: PoolState, meta: MetaStore):
        self._state = state
        self._meta = meta

    def exclusive_bytes(self, device: Device) -> int:
        """Bytes only ``device`` refers to: what deleting it would free."""
        with device.lock.read(), self._state.lock:
            entries = tree.exclusive_entries(self._state.nodes, device.root)
            chunks = sum(self._state.datamap.exclusive_chunks(entry) for entry in entries)
            return chunks * self._state.geometry.chunk_size

    def usage(self) -> PoolUsage:
        """Total, used and free bytes of the pool and what is provisioned in it."""
        with self._state.lock:
            geometry = self._state.geometry
            used = self._state.datamap.used * geometry.chunk_size
            devices = self._state.devices.all()
            volumes = [d for d in devices if d.kind == VOLUME]
            return PoolUsage(
                total_bytes=geometry.capacity,
                used_bytes=used,
                free_bytes=geometry.capacity - used,
                metadata_bytes=self._meta.size_bytes(),
                provisioned_bytes=sum(d.size for d in volumes),
                volumes=len(volumes),
                snapshots=len(devices) - len(volumes),
                chunk_size=geometry.chunk_size,
            )
