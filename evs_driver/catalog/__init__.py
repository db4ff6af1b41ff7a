"""The catalog: volumes and snapshots with their names, sizes and statuses, attachments and
snapshot schedules, in SQLite.

``records`` are the rows as objects, ``txn`` the reads and writes of one transaction (every
status change a compare-and-set), ``store`` the file and its connection.
"""

from evs_driver.catalog.records import (
    Attachment,
    Group,
    GroupSnapshot,
    Schedule,
    Snapshot,
    Volume,
    new_id,
    now,
)
from evs_driver.catalog.store import Catalog
from evs_driver.catalog.txn import Txn

__all__ = [
    "Attachment",
    "Catalog",
    "Group",
    "GroupSnapshot",
    "Schedule",
    "Snapshot",
    "Txn",
    "Volume",
    "new_id",
    "now",
]
