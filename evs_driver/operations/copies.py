"""Images in and out (``evs volume import|export``, ``evs snapshot export``).

Raw images are copied where the manager is, by our own sparse copy. Other formats are
copied by qemu-img in the ``evs`` process (so its progress bar draws on the user's
terminal) against an export made for the copy, scoped to the asking process: one
sequence, ``_through_export``, whether the manager is embedded or in the service.
``imageio`` (with ``subprocess``) is imported where a copy needs it: the command line's
parser imports this module.
"""

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from evs_driver import dataio, exception
from evs_driver.operations.arguments import image_format
from evs_driver.operations.context import Context
from evs_driver.operations.table import Arg, operation, with_client
from evs_driver.units import GiB

if TYPE_CHECKING:
    from evs_driver import imageio

STDIO = "-"  # FILE of a diff stream on a pipe
STDIN, STDOUT = 0, 1
FORCE = Arg(
    "force", ("--force",), action="store_true", default=False, help="Overwrite FILE if it exists."
)


@operation(
    "volume",
    "import",
    "Write an image file (raw, or any format qemu-img reads) onto a volume.",
    args=(Arg("volume", help="Volume id or name."), Arg("file")),
    progress="importing",
)
def volume_import(ctx: Context, volume: str, file: str) -> dict:
    """Write a raw image onto a detached volume (zero blocks stay unmapped)."""
    written = ctx.manager.import_volume(volume, file, ctx.progress)
    return {"volume": ctx.manager.get_volume(volume).id, "file": file, "data_bytes": written}


@operation(
    "volume",
    "export",
    "Write a volume to an image file.",
    args=(Arg("volume", help="Volume id or name."), Arg("file"), image_format(), FORCE),
    progress="exporting",
)
def volume_export(
    ctx: Context, volume: str, file: str, image_format: str = "raw", force: bool = False
) -> dict:
    """Write a detached volume to a raw image."""
    _refuse_existing(file, force)
    written = ctx.manager.export("volume", volume, file, ctx.progress)
    return {"volume": ctx.manager.get_volume(volume).id, "file": file, "data_bytes": written}


@operation(
    "snapshot",
    "export",
    "Write a snapshot to an image file.",
    args=(
        Arg("snapshot", help="Snapshot id or name."),
        Arg("file", help="The image file; - writes a diff stream to standard output."),
        image_format(),
        FORCE,
        Arg(
            "base",
            ("--from",),
            metavar="SNAPSHOT",
            help="Write only what changed since this older snapshot of the same volume, as an "
            "incremental stream for `evs volume import-diff`.",
        ),
        Arg(
            "stream",
            ("--diff-stream",),
            action="store_true",
            default=False,
            help="Write an evs diff stream even without --from (a full one, for a new volume).",
        ),
    ),
    progress="exporting",
)
def snapshot_export(
    ctx: Context,
    snapshot: str,
    file: str,
    image_format: str = "raw",
    force: bool = False,
    base: str | None = None,
    stream: bool = False,
) -> dict:
    """Write an available snapshot to a raw image, or a diff stream (``--from``)."""
    if base or stream:
        _refuse_format(image_format)
        if not dataio.is_stream(file):  # a pipe is written, not replaced
            _refuse_existing(file, force)
        return ctx.manager.export_diff(snapshot, file, base)
    _refuse_existing(file, force)
    written = ctx.manager.export("snapshot", snapshot, file, ctx.progress)
    return {"snapshot": ctx.manager.get_snapshot(snapshot).id, "file": file, "data_bytes": written}


# -- the evs process's side -----------------------------------------------------------------
@with_client("volume_import")
def _import(client, volume: str, file: str) -> dict:
    from evs_driver import imageio

    info = _probe(file, raw_natively=client.embedded)
    if info is None:
        return client.call("volume_import", volume, os.path.abspath(file))
    size = client.call("volume_show", volume)["size"] * GiB
    with _through_export(client, "volume", volume, read_only=False) as (served, uri):
        imageio.import_image(file, info, uri, size, _bar(client))
    return {
        "volume": served["volume"],
        "file": file,
        "format": info.format,
        "virtual_size": info.virtual_size,
    }


@with_client("volume_export")
def _export_volume(client, volume: str, file: str, image_format: str = "raw", force=False):
    return _export(client, "volume", volume, file, image_format, force)


@with_client("snapshot_export")
def _export_snapshot(
    client, snapshot: str, file: str, image_format="raw", force=False, base=None, stream=False
):
    if base or stream:  # written where the manager is, like a raw image
        _refuse_format(image_format)
        path = stdio_path(file, STDOUT)
        if file != STDIO:
            _refuse_existing(path, force)
        return client.call("snapshot_export", snapshot, path, force=force, base=base, stream=True)
    return _export(client, "snapshot", snapshot, file, image_format, force)


def _export(client, kind: str, ref: str, file: str, image_format: str, force: bool) -> dict:
    from evs_driver import imageio

    if file == STDIO:
        raise exception.InvalidInput(
            reason="only a diff stream (--from or --diff-stream) goes to standard output (-)"
        )
    _refuse_existing(file, force)
    if not imageio.available() or (image_format == "raw" and client.embedded):
        if image_format != "raw":
            raise exception.InvalidInput(
                reason=f"writing {image_format} images needs qemu-img (apt-get install qemu-utils)"
            )
        return client.call(f"{kind}_export", ref, os.path.abspath(file), force=force)
    with _through_export(client, kind, ref, read_only=True) as (served, uri):
        imageio.export_image(uri, file, image_format, _bar(client))
    return {kind: served[kind], "file": file, "format": image_format}


@contextlib.contextmanager
def _through_export(client, kind: str, ref: str, read_only: bool) -> Iterator[tuple[dict, str]]:
    """An export of ``ref`` on a private socket for one copy, ended afterwards (and by the
    service anyway if this process dies meanwhile)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="evs-nbd-") as directory:  # sockets are < 108 bytes
        listen = {"socket": os.path.join(directory, "nbd.sock")}
        extra = {"read_only": read_only} if kind == "volume" else {}
        served = client.call(f"{kind}_serve", ref, listen=listen, scoped=True, **extra)
        try:
            yield served, served["uri"]
        finally:
            if served.get("socket") == listen["socket"]:  # ours, not an earlier serve's
                unserve = {"force": True} if kind == "volume" else {}  # qemu-img may linger
                client.call(f"{kind}_unserve", served[kind], **unserve)


def _probe(path: str, raw_natively: bool) -> "imageio.ImageInfo | None":
    """The image's qemu-img info when qemu-img copies it; None for our own raw copy."""
    from evs_driver import imageio

    if not imageio.available() or not os.access(path, os.R_OK):
        return None  # the raw copy reports a missing or unreadable file itself
    info = imageio.inspect(path)
    return None if raw_natively and info.format == "raw" else info


def stdio_path(file: str, fd: int) -> str:
    """``file`` as an absolute path; ``-`` as this process's descriptor ``fd`` under /proc,
    which the manager opens wherever it runs (the service runs as the same user)."""
    if file != STDIO:
        return os.path.abspath(file)
    name = "standard input" if fd == STDIN else "standard output"
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise exception.InvalidInput(reason=f"{name} is closed") from None
    if os.isatty(fd):
        raise exception.InvalidInput(reason=f"{name} is a terminal; redirect it or name a FILE")
    if fd == STDOUT and not dataio.is_stream(f"/dev/fd/{fd}"):
        raise exception.InvalidInput(
            reason=f"{name} is not a pipe (mode {stat.filemode(mode)}); name the FILE instead of -"
        )
    return f"/proc/{os.getpid()}/fd/{fd}"


def _refuse_existing(path: str, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise exception.InvalidInput(reason=f"{path} exists; add --force to overwrite it")


def _refuse_format(image_format: str) -> None:
    if image_format != "raw":
        raise exception.InvalidInput(
            reason=f"a diff stream is evs's own format; drop -O {image_format} (or --from)"
        )


def _bar(client) -> bool:
    """Whether qemu-img should draw its own progress bar (ours would, on a terminal)."""
    return bool(getattr(client.progress, "enabled", False))
