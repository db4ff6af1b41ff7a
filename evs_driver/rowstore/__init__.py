"""The ``local`` backend's redirect-on-write engine: chunk store + SQLite metadata."""

from evs_driver.rowstore.accounting import PoolUsage
from evs_driver.rowstore.devicetable import DeviceInfo
from evs_driver.rowstore.geometry import DEFAULT_CHUNK_SIZE
from evs_driver.rowstore.pool import Pool

__all__ = ["DEFAULT_CHUNK_SIZE", "DeviceInfo", "Pool", "PoolUsage"]
