"""Volume operations as users ask for them (``evs volume ...``)."""

from evs_driver.operations import views
from evs_driver.operations.arguments import PROPERTIES, gib
from evs_driver.operations.context import Context
from evs_driver.operations.table import LISTING, NOTHING, Arg, operation

VOLUME = Arg("volume", help="Volume id or name.")


@operation(
    "volume",
    "create",
    "Create a volume (empty, from a snapshot, or a clone).",
    args=(
        Arg("size", ("--size",), type=gib, help="Size in GiB (default: the source's size)."),
        Arg("name", ("--name",)),
        Arg("description", ("--description",)),
        Arg(
            "snapshot",
            ("--snapshot",),
            group="source",
            help="Snapshot (id or name) to create the volume from.",
        ),
        Arg(
            "source_volume",
            ("--source-volume",),
            group="source",
            help="Volume (id or name) to clone.",
        ),
        Arg(
            "full_clone",
            ("--full-clone",),
            action="store_true",
            default=False,
            help="Copy the data instead of sharing blocks with the source.",
        ),
        Arg("backend", ("--backend",), help="Backend group (default: the first enabled one)."),
        PROPERTIES,
    ),
    progress="copying",
)
def volume_create(
    ctx: Context,
    size: int | None = None,
    name: str | None = None,
    description: str | None = None,
    snapshot: str | None = None,
    source_volume: str | None = None,
    full_clone: bool = False,
    backend: str | None = None,
    metadata: dict | None = None,
) -> dict:
    """Create a volume; see ``VolumeManager.create_volume``."""
    record = ctx.manager.create_volume(
        size=size,
        name=name or None,  # an empty name is no name
        description=description,
        snapshot=snapshot,
        source_volume=source_volume,
        full_clone=full_clone,
        backend=backend,
        metadata=metadata,
        progress=ctx.progress if full_clone else None,
    )
    return views.volume(ctx.manager, record)


@operation("volume", "list", "List volumes.", result=LISTING, columns=views.VOLUME_COLUMNS)
def volume_list(ctx: Context) -> list[dict]:
    """Every volume (from the catalog alone: no backend is waited for)."""
    return [views.volume(ctx.manager, v) for v in ctx.manager.list_volumes()]


@operation("volume", "show", "Show a volume.", args=(VOLUME,))
def volume_show(ctx: Context, volume: str) -> dict:
    """One volume, with its mapped bytes and snapshot count."""
    return views.volume(ctx.manager, ctx.manager.get_volume(volume), usage=True)


@operation(
    "volume",
    "delete",
    "Delete a volume.",
    args=(
        VOLUME,
        Arg(
            "cascade",
            ("--cascade",),
            action="store_true",
            default=False,
            help="Delete its snapshots too.",
        ),
    ),
    result=NOTHING,
)
def volume_delete(ctx: Context, volume: str, cascade: bool = False) -> None:
    """Delete a volume (an id that is already gone is fine)."""
    ctx.manager.delete_volume(volume, cascade=cascade)


@operation(
    "volume",
    "extend",
    "Grow a volume.",
    args=(VOLUME, Arg("size", ("--size",), type=gib, required=True, help="New size in GiB.")),
)
def volume_extend(ctx: Context, volume: str, size: int) -> dict:
    """Grow a volume; its snapshots keep their sizes."""
    return views.volume(ctx.manager, ctx.manager.extend_volume(volume, size))


@operation(
    "volume",
    "revert",
    "Revert a volume to any of its snapshots.",
    args=(VOLUME, Arg("snapshot", ("--snapshot",), required=True)),
)
def volume_revert(ctx: Context, volume: str, snapshot: str) -> dict:
    """Revert a volume to one of its snapshots; every snapshot is kept."""
    return views.volume(ctx.manager, ctx.manager.revert_volume(volume, snapshot))


@operation(
    "volume",
    "reset-state",
    "Force a volume's status (operators only).",
    args=(VOLUME, Arg("state", ("--state",), required=True)),
)
def volume_reset_state(ctx: Context, volume: str, state: str) -> dict:
    """Force a volume's status, like ``cinder reset-state``."""
    return views.volume(ctx.manager, ctx.manager.reset_status("volume", volume, state))
