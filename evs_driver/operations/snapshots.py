"""Snapshot operations as users ask for them (``evs snapshot ...``)."""

from evs_driver.operations import views
from evs_driver.operations.arguments import PROPERTIES
from evs_driver.operations.context import Context
from evs_driver.operations.table import LISTING, NOTHING, Arg, operation

SNAPSHOT = Arg("snapshot", help="Snapshot id or name.")


@operation(
    "snapshot",
    "create",
    "Snapshot a volume.",
    args=(
        Arg("volume", help="Volume id or name."),
        Arg("name", ("--name",)),
        Arg("description", ("--description",)),
        Arg(
            "force",
            ("--force",),
            action="store_true",
            default=False,
            help="Accepted for Cinder compatibility; in-use volumes need no force.",
        ),
        PROPERTIES,
    ),
)
def snapshot_create(
    ctx: Context,
    volume: str,
    name: str | None = None,
    description: str | None = None,
    force: bool = False,
    metadata: dict | None = None,
) -> dict:
    """Snapshot a volume (attached ones too: the write barrier)."""
    record = ctx.manager.create_snapshot(
        volume, name=name or None, description=description, force=force, metadata=metadata
    )
    return views.snapshot(ctx.manager, record)


@operation(
    "snapshot",
    "list",
    "List snapshots.",
    args=(Arg("volume", ("--volume",), help="Only this volume's (id or name)."),),
    result=LISTING,
    columns=views.SNAPSHOT_COLUMNS,
)
def snapshot_list(ctx: Context, volume: str | None = None) -> list[dict]:
    """Every snapshot, or one volume's; a backend busy elsewhere shows no exclusive bytes."""
    return [views.snapshot(ctx.manager, s, wait=False) for s in ctx.manager.list_snapshots(volume)]


@operation("snapshot", "show", "Show a snapshot.", args=(SNAPSHOT,))
def snapshot_show(ctx: Context, snapshot: str) -> dict:
    """One snapshot with its exclusive bytes."""
    return views.snapshot(ctx.manager, ctx.manager.get_snapshot(snapshot))


@operation("snapshot", "delete", "Delete a snapshot.", args=(SNAPSHOT,), result=NOTHING)
def snapshot_delete(ctx: Context, snapshot: str) -> None:
    """Delete a snapshot (an id that is already gone is fine)."""
    ctx.manager.delete_snapshot(snapshot)


@operation(
    "snapshot",
    "reset-state",
    "Force a snapshot's status (operators only).",
    args=(SNAPSHOT, Arg("state", ("--state",), required=True)),
)
def snapshot_reset_state(ctx: Context, snapshot: str, state: str) -> dict:
    """Force a snapshot's status, like ``cinder reset-state``."""
    return views.snapshot(ctx.manager, ctx.manager.reset_status("snapshot", snapshot, state))
