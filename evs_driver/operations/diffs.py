"""Changed-block diffs (``evs snapshot diff``, ``evs volume import-diff``); the stream is
written by ``evs snapshot export --from`` (see ``copies``)."""

from evs_driver.operations.context import Context
from evs_driver.operations.copies import STDIN, stdio_path
from evs_driver.operations.table import Arg, operation, with_client


@operation(
    "snapshot",
    "diff",
    "List the extents where a snapshot differs from an older one (or all it holds).",
    args=(
        Arg("snapshot", help="Snapshot id or name."),
        Arg(
            "base",
            ("--from",),
            metavar="SNAPSHOT",
            help="The older snapshot of the same volume (default: compare with zeros).",
        ),
    ),
)
def snapshot_diff(ctx: Context, snapshot: str, base: str | None = None) -> dict:
    """Changed extents from the backend's mapping (cost: what changed, not the size)."""
    return ctx.manager.diff_snapshots(snapshot, base)


@operation(
    "volume",
    "import-diff",
    "Apply a diff stream (from `evs snapshot export --from`) to a volume, then snapshot it.",
    args=(
        Arg("volume", help="Volume id or name."),
        Arg("file", help="The stream's file, or - to read it from standard input."),
    ),
)
def volume_import_diff(ctx: Context, volume: str, file: str) -> dict:
    """Apply a stream whose base the volume holds; refuse any other, changing nothing."""
    return ctx.manager.import_diff(volume, file)


@with_client("volume_import_diff")
def _import_diff(client, volume: str, file: str) -> dict:
    return client.call("volume_import_diff", volume, stdio_path(file, STDIN))
