"""Snapshot schedule operations as users ask for them (``evs schedule ...``)."""

from evs_driver.operations import views
from evs_driver.operations.arguments import count, interval
from evs_driver.operations.context import Context
from evs_driver.operations.table import LISTING, NOTHING, Arg, operation

SCHEDULE = Arg("schedule", help="Schedule id, or its volume's id or name.")


@operation(
    "schedule",
    "create",
    "Snapshot a volume on a schedule, keeping the newest and daily/weekly ones.",
    args=(
        Arg("volume", help="Volume id or name."),
        Arg(
            "every",
            ("--every",),
            type=interval,
            required=True,
            metavar="INTERVAL",
            help="How often: a whole number and m, h, d or w (30m, 1h, 1d, 1w).",
        ),
        Arg(
            "keep",
            ("--keep",),
            type=count,
            required=True,
            metavar="N",
            help="Keep the N newest automatic snapshots (at least 1).",
        ),
        Arg(
            "keep_daily",
            ("--keep-daily",),
            type=count,
            default=0,
            metavar="N",
            help="Also keep the newest snapshot of each of the last N days (UTC) that have one.",
        ),
        Arg(
            "keep_weekly",
            ("--keep-weekly",),
            type=count,
            default=0,
            metavar="N",
            help="Also keep the newest snapshot of each of the last N ISO weeks that have one.",
        ),
    ),
)
def schedule_create(
    ctx: Context, volume: str, every: int, keep: int, keep_daily: int = 0, keep_weekly: int = 0
) -> dict:
    """Create a volume's schedule (``every`` in seconds); evs-volume runs it."""
    record = ctx.manager.create_schedule(volume, every, keep, keep_daily, keep_weekly)
    if not ctx.in_service:
        from oslo_log import log as logging  # not at import: `evs --help` stays light

        logging.getLogger(__name__).warning(
            "No evs-volume runs now: schedule %s runs once it starts", record.id
        )
    return views.schedule(ctx.manager, record)


@operation(
    "schedule",
    "list",
    "List snapshot schedules.",
    args=(Arg("volume", ("--volume",), help="Only this volume's (id or name)."),),
    result=LISTING,
    columns=views.SCHEDULE_COLUMNS,
)
def schedule_list(ctx: Context, volume: str | None = None) -> list[dict]:
    """Every schedule, or one volume's."""
    return [views.schedule(ctx.manager, s) for s in ctx.manager.list_schedules(volume)]


@operation("schedule", "show", "Show a snapshot schedule.", args=(SCHEDULE,))
def schedule_show(ctx: Context, schedule: str) -> dict:
    """One schedule, with its last run and how many snapshots it keeps now."""
    return views.schedule(ctx.manager, ctx.manager.get_schedule(schedule))


@operation(
    "schedule",
    "delete",
    "Stop a snapshot schedule (its snapshots stay).",
    args=(SCHEDULE,),
    result=NOTHING,
)
def schedule_delete(ctx: Context, schedule: str) -> None:
    """Delete a schedule (an id that is already gone is fine)."""
    ctx.manager.delete_schedule(schedule)
