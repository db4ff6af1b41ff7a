"""Pool operations (``evs pool ...``): what each backend holds, its check, creating one."""

from evs_driver.operations import views
from evs_driver.operations.context import Context
from evs_driver.operations.table import CHECK, DETAILS, Arg, operation

POOL_COLUMNS = (
    "backend",
    "state",
    "volume_backend",
    "location",
    "total_bytes",
    "used_bytes",
    "allocated_bytes",
    "provisioned_bytes",
    "volumes",
    "snapshots",
)


@operation(
    "pool",
    "show",
    "Capacity, state and location of each backend.",
    result=DETAILS,
    columns=POOL_COLUMNS,
)
def pool_show(ctx: Context) -> list[dict]:
    """One row per enabled backend, up (with its space) or down (with the reason)."""
    return [
        views.pool(ctx.manager, name, stats) for name, stats in ctx.manager.pool_stats().items()
    ]


@operation("pool", "check", "Check every pool and the catalog; non-zero on problems.", result=CHECK)
def pool_check(ctx: Context) -> dict[str, list[str]]:
    """Problems per backend (empty lists when clean)."""
    return ctx.manager.check()


@operation(
    "pool",
    "create",
    "Create a new, empty pool for a backend whose pool is missing.",
    args=(
        Arg("backend", ("--backend",), help="Backend group (default: the first enabled one)."),
        Arg(
            "force",
            ("--force",),
            action="store_true",
            default=False,
            help="Create it even though the catalog has volumes on the backend (their data "
            "is in the missing pool; they are left without it).",
        ),
    ),
)
def pool_create(ctx: Context, backend: str | None = None, force: bool = False) -> dict:
    """Create the backend's pool where none is; the backend is up afterwards."""
    name = ctx.manager.create_pool(backend, force=force)
    return views.pool(ctx.manager, name, ctx.manager.pool_stats()[name])
