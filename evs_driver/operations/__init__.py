"""The operations layer: the one table of what users can ask (see ``table``).

Importing this package registers every operation, in the order ``evs --help`` lists them.
"""

from evs_driver.operations import (  # noqa: F401
    attach,
    copies,
    diffs,
    exports,
    groups,
    manage,
    pools,
    schedules,
    snapshots,
    volumes,
)
from evs_driver.operations.context import Context, Session
from evs_driver.operations.table import OPERATIONS, Operation

__all__ = ["OPERATIONS", "Context", "Operation", "Session", "find", "run"]


def find(name: str) -> Operation | None:
    """The operation called ``name`` (a protocol method), or None."""
    return OPERATIONS.get(name)


def run(ctx: Context, name: str, args: list | tuple = (), kwargs: dict | None = None):
    """Run operation ``name`` where the manager is."""
    return OPERATIONS[name].run(ctx, *args, **(kwargs or {}))
