"""Block attachments as users ask for them (``evs volume attach / detach``).

``attach`` builds the connector os-brick would give for the initiator: this host's own
IQN and host NQN unless ``--initiator`` names another, and the protocol asked for (the
backend's ``target_helper`` by default). It prints the connection info os-brick takes.
"""

from evs_driver.attach import connectors
from evs_driver.operations.context import Context
from evs_driver.operations.table import Arg, operation

PROTOCOLS = ("iscsi", "nvmeof", "local")
VOLUME = Arg("volume", help="Volume id or name.")


@operation(
    "volume",
    "attach",
    "Attach a volume to an initiator over iSCSI or NVMe/TCP, or as a device on this host; "
    "prints os-brick's connection info.",
    args=(
        VOLUME,
        Arg(
            "protocol",
            ("--protocol",),
            choices=PROTOCOLS,
            help="Default: the backend's target_helper (lioadm: iscsi, nvmet: nvmeof).",
        ),
        Arg(
            "initiator",
            ("--initiator",),
            metavar="IQN_OR_NQN",
            help="The initiator to let in (default: this host's own IQN or host NQN).",
        ),
    ),
)
def volume_attach(
    ctx: Context, volume: str, protocol: str | None = None, initiator: str | None = None
) -> dict:
    """Attach a volume (in-use) to ``initiator`` over ``protocol``; again changes nothing."""
    record = ctx.manager.get_volume(volume)
    connector = connectors.this_host(protocol or "default", initiator)
    info = ctx.manager.attach_volume(record.id, connector)
    return {"volume": record.id, "driver_volume_type": info["driver_volume_type"]} | info["data"]


@operation(
    "volume",
    "detach",
    "End an initiator's access to a volume (every initiator's by default).",
    args=(
        VOLUME,
        Arg(
            "initiator",
            ("--initiator",),
            metavar="IQN_OR_NQN_OR_HOST",
            help="The initiator (this host's name for a local attach).",
        ),
    ),
)
def volume_detach(ctx: Context, volume: str, initiator: str | None = None) -> dict:
    """Detach one initiator, or all; the volume is available once none is left."""
    record = ctx.manager.get_volume(volume)
    if not initiator:
        connector = {}
    elif initiator == connectors.host_name():
        connector = {"protocol": "local", "host": initiator}
    else:
        connector = connectors.for_name(initiator)
    before = {(a["protocol"], a["initiator"]) for a in ctx.manager.block_attachments(record.id)}
    record = ctx.manager.detach_volume(record.id, connector)
    after = {(a["protocol"], a["initiator"]) for a in ctx.manager.block_attachments(record.id)}
    return {
        "volume": record.id,
        "detached": sorted(f"{p} {name}" for p, name in before - after),
        "status": record.status,
    }
