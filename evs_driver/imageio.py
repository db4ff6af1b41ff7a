"""Disk images of any format qemu-img reads, copied through an NBD export with qemu-img.

The copy runs in the ``evs`` process (so ``-p`` draws on the user's terminal) against an
export made for it; only the service or the embedded manager touches the pool.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

from evs_driver import exception

ZERO_STEP = 1024**3  # qemu-io requests stay below its 2 GiB limit


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says about an image."""

    format: str
    virtual_size: int


def available() -> bool:
    """True when qemu-img (and qemu-io, from the same package) are installed."""
    return shutil.which("qemu-img") is not None and shutil.which("qemu-io") is not None


def _run(cmd: list[str], what: str, progress: bool = False) -> str:
    """Run a qemu tool; its last error line becomes an ``InvalidInput``."""
    try:
        result = subprocess.run(
            cmd,
            stdout=sys.stderr if progress else subprocess.PIPE,  # bars on stderr, like ours
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            umask=0o077,  # an exported image holds volume data: owner-only, like the pool
        )
    except OSError as exc:
        raise exception.InvalidInput(reason=f"{what}: cannot run {cmd[0]}: {exc}") from exc
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        raise exception.InvalidInput(
            reason=f"{what}: {cmd[0]} failed: {lines[-1] if lines else result.returncode}"
        )
    return result.stdout or ""


def inspect(path: str) -> ImageInfo:
    """Format and virtual size of the image at ``path``; images with backing files refused."""
    if not os.access(path, os.R_OK):
        raise exception.InvalidInput(reason=f"cannot read {path}")
    text = _run(["qemu-img", "info", "--output=json", path], f"cannot inspect {path}")
    info = json.loads(text)
    if info.get("backing-filename"):
        # A backing file would make qemu-img read another file chosen by the image.
        raise exception.InvalidInput(
            reason=f"{path} has a backing file ({info['backing-filename']}); flatten it first "
            "(qemu-img convert)"
        )
    return ImageInfo(format=info["format"], virtual_size=int(info["virtual-size"]))


def import_image(path: str, info: ImageInfo, uri: str, device_size: int, progress: bool) -> None:
    """Write the image onto the export at ``uri``; the rest of the device reads as zeros."""
    if info.virtual_size > device_size:
        raise exception.InvalidSize(
            reason=f"{path} holds {info.virtual_size} bytes but the volume has only "
            f"{device_size}; extend the volume or create a larger one"
        )
    cmd = ["qemu-img", "convert", "-n", "-f", info.format, "-O", "raw"]
    _run([*cmd, *(["-p"] if progress else []), path, uri], f"importing {path}", progress)
    commands = []
    for offset in range(info.virtual_size, device_size, ZERO_STEP):
        commands += ["-c", f"write -z -u {offset} {min(ZERO_STEP, device_size - offset)}"]
    if commands:
        output = _run(["qemu-io", "-f", "raw", *commands, uri], f"zeroing past {path}")
        if "failed" in output:  # qemu-io reports a failed command but exits 0
            raise exception.InvalidInput(reason=f"zeroing past {path}: {output.strip()}")


def export_image(uri: str, path: str, image_format: str, progress: bool) -> None:
    """Write the export at ``uri`` to ``path`` in ``image_format``; appears only when complete."""
    partial = f"{path}.partial"
    cmd = ["qemu-img", "convert", "-f", "raw", "-O", image_format]
    try:
        _run([*cmd, *(["-p"] if progress else []), uri, partial], f"exporting to {path}", progress)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
