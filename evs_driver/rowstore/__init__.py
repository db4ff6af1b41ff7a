"""The ``local`` backend's redirect-on-write engine: chunk store + SQLite metadata."""

from evs_driver.rowstore.pool import DEFAULT_CHUNK_SIZE, DeviceInfo, Pool, PoolUsage

__all__ = ["DEFAULT_CHUNK_SIZE", "DeviceInfo", "Pool", "PoolUsage"]
