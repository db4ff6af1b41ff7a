"""Adopting a backend's existing devices and letting them go (``evs volume manage`` ...).

This is how a volume moves between hosts that share storage (rbd): ``unmanage`` on one
(the catalog forgets it, the data stays), ``manage`` on the other. A backend that cannot
adopt devices (``local``, ``lvm_thin``) refuses with a clear error.
"""

from evs_driver.operations import views
from evs_driver.operations.context import Context
from evs_driver.operations.table import LISTING, NOTHING, Arg, operation

BACKEND = Arg("backend", ("--backend",), help="Backend group (default: the first enabled one).")
BY_ID = Arg(
    "by_id",
    ("--by-id",),
    action="store_true",
    default=False,
    help="REFERENCE is the backend's id of the device, not its name.",
)
MANAGEABLE_COLUMNS = ("reference", "size", "safe_to_manage", "reason_not_safe", "cinder_id")


def _reference(reference: str, by_id: bool = False) -> dict:
    return {"source-id" if by_id else "source-name": reference}


def _manageable_row(entry: dict) -> dict:
    ref = entry["reference"]
    return {
        "reference": ref.get("source-name") or ref.get("source-id") or str(ref),
        "size": entry["size"],
        "safe_to_manage": entry["safe_to_manage"],
        "reason_not_safe": entry.get("reason_not_safe"),
        "cinder_id": entry.get("cinder_id"),
        "extra_info": entry.get("extra_info"),
    }


@operation(
    "volume",
    "manageable",
    "List a backend's devices that could be managed as volumes.",
    args=(BACKEND,),
    result=LISTING,
    columns=MANAGEABLE_COLUMNS,
)
def volume_manageable(ctx: Context, backend: str | None = None) -> list[dict]:
    """Devices of ``backend`` with whether they are safe to manage (sizes in GiB)."""
    return [_manageable_row(e) for e in ctx.manager.manageable_volumes(backend)]


@operation(
    "volume",
    "manage",
    "Adopt an existing device of a backend as a volume.",
    args=(
        Arg("reference", help="The device's name on the backend (see `volume manageable`)."),
        BY_ID,
        BACKEND,
        Arg("name", ("--name",)),
        Arg("description", ("--description",)),
    ),
)
def volume_manage(
    ctx: Context,
    reference: str,
    by_id: bool = False,
    backend: str | None = None,
    name: str | None = None,
    description: str | None = None,
) -> dict:
    """Manage the device ``reference`` names; it is renamed to the new volume's id."""
    record = ctx.manager.manage_volume(
        backend, _reference(reference, by_id), name or None, description
    )
    return views.volume(ctx.manager, record)


@operation(
    "volume",
    "unmanage",
    "Forget a volume without snapshots; its data stays on the backend.",
    args=(Arg("volume", help="Volume id or name."),),
    result=NOTHING,
)
def volume_unmanage(ctx: Context, volume: str) -> None:
    """The catalog forgets the volume; another host can manage its device."""
    ctx.manager.unmanage_volume(volume)


@operation(
    "snapshot",
    "manage",
    "Adopt an existing snapshot of a managed volume.",
    args=(
        Arg("volume", help="The managed volume (id or name) the snapshot belongs to."),
        Arg("reference", help="The snapshot's name on the backend."),
        Arg("name", ("--name",)),
        Arg("description", ("--description",)),
    ),
)
def snapshot_manage(
    ctx: Context,
    volume: str,
    reference: str,
    name: str | None = None,
    description: str | None = None,
) -> dict:
    """Manage a backend snapshot of ``volume``."""
    record = ctx.manager.manage_snapshot(volume, _reference(reference), name or None, description)
    return views.snapshot(ctx.manager, record)


@operation(
    "snapshot",
    "unmanage",
    "Forget a snapshot; its data stays on the backend.",
    args=(Arg("snapshot", help="Snapshot id or name."),),
    result=NOTHING,
)
def snapshot_unmanage(ctx: Context, snapshot: str) -> None:
    """The catalog forgets the snapshot; its volume's host can manage it again."""
    ctx.manager.unmanage_snapshot(snapshot)
