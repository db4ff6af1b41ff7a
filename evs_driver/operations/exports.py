"""Serving volumes and snapshots over NBD (``evs volume serve``, ``evs export list``...).

A *scoped* export lives as long as the caller's session: the ``evs`` process that asked for
it for a copy. Without a running service, the embedded manager serves only such scoped
exports on private sockets; ``evs volume serve`` then runs the service in the foreground.
"""

import os

from evs_driver import exception
from evs_driver.operations.arguments import LISTEN, fold_listen
from evs_driver.operations.context import Context
from evs_driver.operations.table import LISTING, Arg, operation

EXPORT_COLUMNS = (
    "protocol",
    "export_name",
    "name",
    "uri",
    "target",
    "device",
    "initiators",
    "connections",
)


def _connector(listen: dict | None, read_only: bool) -> dict:
    connector = {
        "host": os.uname().nodename,
        "access_mode": "ro" if read_only else "rw",
        "protocol": "nbd",  # served by us even where the backend has its own attach (rbd)
    }
    if listen:
        connector["nbd_listen"] = listen
    return connector


@operation(
    "volume",
    "serve",
    "Attach a volume and serve it over NBD (starts evs-volume if none runs).",
    args=(
        Arg("volume", help="Volume id or name."),
        *LISTEN,
        Arg(
            "read_only", ("--read-only",), action="store_true", default=False, help="Refuse writes."
        ),
    ),
    prepare=fold_listen,
)
def volume_serve(
    ctx: Context,
    volume: str,
    listen: dict | None = None,
    read_only: bool = False,
    scoped: bool = False,
) -> dict:
    """Attach (in-use) and serve a volume; ``scoped``: until the caller goes away."""
    record = ctx.manager.get_volume(volume)
    info = ctx.manager.attach_volume(volume, _connector(listen, read_only))
    if scoped:
        ctx.session.on_close(lambda: _end_scoped(ctx, record, info["data"]))
    return {"volume": record.id, "driver_volume_type": info["driver_volume_type"]} | info["data"]


@operation(
    "volume",
    "unserve",
    "Stop serving a volume and detach it.",
    args=(
        Arg("volume", help="Volume id or name."),
        Arg(
            "force",
            ("--force",),
            action="store_true",
            default=False,
            help="Disconnect connected clients.",
        ),
    ),
)
def volume_unserve(ctx: Context, volume: str, force: bool = False) -> dict:
    """Detach a volume (one not attached is fine); connected clients need ``force``."""
    record = ctx.manager.get_volume(volume)
    clients = (ctx.manager.served(record) or {}).get("connections", 0)
    if clients and not force:
        raise exception.InvalidOperation(
            reason=f"volume {record.id} has {clients} connected client(s); "
            f"`evs volume unserve {record.id} --force` disconnects them"
        )
    ctx.manager.detach_volume(record.id, {})
    return {"volume": record.id, "status": "available"}


@operation(
    "snapshot",
    "serve",
    "Serve a snapshot read-only over NBD.",
    args=(Arg("snapshot", help="Snapshot id or name."), *LISTEN),
    prepare=fold_listen,
)
def snapshot_serve(
    ctx: Context, snapshot: str, listen: dict | None = None, scoped: bool = False
) -> dict:
    """Serve a snapshot (its status does not change); one already served keeps its export."""
    record, info, made = ctx.manager.serve_snapshot(snapshot, _connector(listen, True))
    if scoped and made:
        ctx.session.on_close(lambda: _end_scoped(ctx, record, info["data"]))
    return {"snapshot": record.id, "driver_volume_type": info["driver_volume_type"]} | info["data"]


@operation(
    "snapshot",
    "unserve",
    "Stop serving a snapshot.",
    args=(Arg("snapshot", help="Snapshot id or name."),),
)
def snapshot_unserve(ctx: Context, snapshot: str) -> dict:
    """Stop serving a snapshot (one not served is fine)."""
    return {"snapshot": ctx.manager.unserve_snapshot(snapshot).id, "served": False}


@operation(
    "export",
    "list",
    "List the NBD exports, and the kernel NBD devices and targets of attached volumes.",
    result=LISTING,
    columns=EXPORT_COLUMNS,
)
def export_list(ctx: Context) -> list[dict]:
    """NBD exports with their connection counts, then devices and targets with initiators."""
    served = [{"protocol": "nbd-export"} | e for e in ctx.manager.exports()]
    return served + [{"export_name": row["volume"]} | row for row in ctx.manager.block_exports()]


def _end_scoped(ctx: Context, record, data: dict) -> None:
    """End an export a session made, unless someone ended or replaced it since."""
    from evs_driver import catalog  # loaded by the manager already; not by the parser

    served = ctx.manager.served(record)
    if served is None or served["uri"] != data["uri"]:
        return
    if isinstance(record, catalog.Snapshot):
        ctx.manager.unserve_snapshot(record.id)
    else:
        ctx.manager.detach_volume(record.id, {})
