"""``VolumeManager``: the coordinator over catalog, locks, rules and one driver per backend.

One class made of one mixin per group of operations (``volumes``, ``snapshots``,
``schedules``, ``attachments``, ``block`` attachments, ``data``, ``adopt``, ``diffs``,
``groups``) over ``base.ManagerBase``, which holds the pattern every operation follows;
``backends`` starts each enabled backend on first use.
"""

from evs_driver.manager.adopt import AdoptOperations
from evs_driver.manager.attachments import AttachOperations
from evs_driver.manager.base import EMBEDDED_BACKEND
from evs_driver.manager.block import BlockAttachOperations
from evs_driver.manager.data import DataOperations
from evs_driver.manager.diffs import DiffOperations
from evs_driver.manager.groups import GroupOperations
from evs_driver.manager.schedules import ScheduleOperations
from evs_driver.manager.snapshots import SnapshotOperations
from evs_driver.manager.volumes import VolumeOperations

__all__ = ["EMBEDDED_BACKEND", "VolumeManager"]


class VolumeManager(
    VolumeOperations,
    ScheduleOperations,
    SnapshotOperations,
    AttachOperations,
    BlockAttachOperations,
    DataOperations,
    AdoptOperations,
    DiffOperations,
    GroupOperations,
):
    """Volumes and snapshots over the enabled backends, enforcing the product rules.

    A manager holds each backend it has used (its pool open, other processes waiting)
    until ``close``: use one per command, or one in a service, not one per idle program.
    """
