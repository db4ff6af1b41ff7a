"""The ``local`` backend's redirect-on-write engine: chunk store + SQLite metadata."""

from evs_driver.rowstore.devices import DEFAULT_CHUNK_SIZE, DeviceInfo, PoolUsage
from evs_driver.rowstore.pool import Pool

__all__ = ["DEFAULT_CHUNK_SIZE", "DeviceInfo", "Pool", "PoolUsage"]
