"""Consistency groups as users ask for them (``evs group ...``)."""

from evs_driver.operations.context import Context
from evs_driver.operations.table import LISTING, NOTHING, Arg, operation

GROUP = Arg("group", help="Group id or name.")
GROUP_SNAPSHOT = Arg("group_snapshot", help="Group snapshot id or name.")
COLUMNS = ("id", "name", "status", "backend", "volumes", "created_at")
SNAPSHOT_COLUMNS = ("id", "name", "group_id", "status", "snapshots", "created_at")


def _group(manager, record) -> dict:
    return {
        "id": record.id,
        "name": record.display_name,
        "description": record.display_description,
        "status": record.status,
        "backend": record.backend,
        "created_at": record.created_at,
        "volumes": [v.id for v in manager.group_members(record)],
    }


def _group_snapshot(manager, record) -> dict:
    return {
        "id": record.id,
        "name": record.display_name,
        "group_id": record.group_id,
        "status": record.status,
        "backend": record.backend,
        "created_at": record.created_at,
        "snapshots": {s.volume_id: s.id for s in manager.group_snapshot_members(record)},
    }


@operation(
    "group",
    "create",
    "Make a consistency group of volumes (or one from a group snapshot).",
    args=(
        Arg(
            "volumes",
            ("--volume",),
            action="append",
            default=[],
            metavar="VOLUME",
            help="A member volume, id or name (repeatable).",
            group="source",
        ),
        Arg(
            "source",
            ("--from-group-snapshot",),
            metavar="GROUP_SNAPSHOT",
            help="New volumes cloned from this group snapshot's members, at one instant.",
            group="source",
        ),
        Arg("name", ("--name",)),
        Arg("description", ("--description",)),
    ),
)
def group_create(
    ctx: Context,
    volumes: list[str] = (),
    source: str | None = None,
    name: str | None = None,
    description: str | None = None,
) -> dict:
    """A group of existing volumes, or of clones of a group snapshot's members."""
    if source:
        return _group(ctx.manager, ctx.manager.create_group_from_snapshot(source, name=name))
    group = ctx.manager.create_group(list(volumes), name=name, description=description)
    return _group(ctx.manager, group)


@operation("group", "list", "List groups.", result=LISTING, columns=COLUMNS)
def group_list(ctx: Context) -> list[dict]:
    """Every group with its member volumes."""
    return [_group(ctx.manager, g) for g in ctx.manager.list_groups()]


@operation("group", "show", "Show a group.", args=(GROUP,))
def group_show(ctx: Context, group: str) -> dict:
    """One group with its member volumes."""
    return _group(ctx.manager, ctx.manager.get_group(group))


@operation(
    "group",
    "update",
    "Add volumes to a group or take them out.",
    args=(
        GROUP,
        Arg("add", ("--add-volume",), action="append", default=[], metavar="VOLUME"),
        Arg("remove", ("--remove-volume",), action="append", default=[], metavar="VOLUME"),
        Arg("name", ("--name",)),
    ),
)
def group_update(
    ctx: Context, group: str, add: list[str] = (), remove: list[str] = (), name: str | None = None
) -> dict:
    """Change a group's members or name."""
    record = ctx.manager.update_group(group, list(add), list(remove), name=name)
    return _group(ctx.manager, record)


@operation("group", "delete", "Delete a group (its volumes stay).", args=(GROUP,), result=NOTHING)
def group_delete(ctx: Context, group: str) -> None:
    """Delete a group without group snapshots."""
    ctx.manager.delete_group(group)


@operation(
    "group",
    "snapshot",
    "Snapshot every volume of a group at one crash-consistent instant.",
    args=(GROUP, Arg("name", ("--name",))),
)
def group_snapshot(ctx: Context, group: str, name: str | None = None) -> dict:
    """One group snapshot: a snapshot of each member, all at one instant."""
    return _group_snapshot(ctx.manager, ctx.manager.create_group_snapshot(group, name=name))


@operation(
    "group",
    "snapshot-list",
    "List group snapshots.",
    args=(Arg("group", ("--group",), help="Only this group's."),),
    result=LISTING,
    columns=SNAPSHOT_COLUMNS,
)
def group_snapshot_list(ctx: Context, group: str | None = None) -> list[dict]:
    """Every group snapshot, or one group's."""
    return [_group_snapshot(ctx.manager, g) for g in ctx.manager.list_group_snapshots(group)]


@operation(
    "group",
    "snapshot-delete",
    "Delete a group snapshot and its member snapshots.",
    args=(GROUP_SNAPSHOT,),
    result=NOTHING,
)
def group_snapshot_delete(ctx: Context, group_snapshot: str) -> None:
    """Delete a group snapshot (an id already gone is fine)."""
    ctx.manager.delete_group_snapshot(group_snapshot)


@operation(
    "group",
    "revert",
    "Revert every volume of a group to a group snapshot, at one instant.",
    args=(GROUP, GROUP_SNAPSHOT),
)
def group_revert(ctx: Context, group: str, group_snapshot: str) -> dict:
    """Revert the members a group snapshot holds; every snapshot stays."""
    return _group(ctx.manager, ctx.manager.revert_group(group, group_snapshot))
