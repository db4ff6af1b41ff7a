"""The pool's metadata as it is in memory, and the one lock that guards it.

Invariant: the nodes, the data map and the device table change only under ``lock``, which
is never held across data I/O except by a control operation's commit; every layer above reads and
changes them through their own methods, and only the transaction stores them.
"""

import dataclasses
import threading

from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.devicetable import DeviceTable
from evs_driver.rowstore.geometry import Geometry
from evs_driver.rowstore.nodes import NodeStore


@dataclasses.dataclass(frozen=True, eq=False)
class PoolState:
    """What the data path, the control operations and the transaction share."""

    geometry: Geometry
    lock: threading.RLock
    nodes: NodeStore
    datamap: DataMap
    devices: DeviceTable
