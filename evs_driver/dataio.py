"""Raw images in and out of block devices, through the one copy loop (``copying``): holes and
zero blocks are skipped, not written, so sparse images stay thin."""

import contextlib
import os
import stat
from collections.abc import Callable, Iterator

from evs_driver import exception
from evs_driver.copying import copy_into
from evs_driver.filedev import FileDevice

Progress = Callable[[int, int], None]


def import_file(path: str, device, progress: Progress | None = None) -> int:
    """Copy the raw image at ``path`` onto ``device``; the rest of the device reads as zeros.

    Returns the number of bytes that were written as data.
    """
    try:
        image = FileDevice(path, read_only=True)
    except OSError as exc:
        raise exception.InvalidInput(reason=f"cannot read {path}: {exc.strerror}") from exc
    with image:
        if image.size > device.size:
            raise exception.InvalidSize(
                reason=f"{path} holds {image.size} bytes but the volume has only "
                f"{device.size}; extend the volume or create a larger one"
            )
        written = copy_into(image, device, target_is_zero=False, progress=progress)
    if image.size < device.size:
        device.write_zeroes(image.size, device.size - image.size)
        device.flush()
    return written


@contextlib.contextmanager
def whole_file(path: str) -> Iterator[tuple[int, str]]:
    """A new owner-only file beside ``path`` (its descriptor and name) that becomes ``path``
    when the block ends well and is removed when it does not: never a partial ``path``."""
    partial = f"{path}.partial"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise exception.InvalidInput(reason=f"cannot write {path}: {exc.strerror}") from exc
    try:
        yield fd, partial
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def is_stream(path: str) -> bool:
    """True when ``path`` is an existing pipe or character device: written in place, in
    order, never replaced by a file (``evs snapshot export S - --from S1 | ssh ...``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def export_file(device, path: str, progress: Progress | None = None) -> int:
    """Write ``device`` to a raw (sparse) image at ``path``; returns bytes written as data.

    The image appears at ``path`` only when complete (written beside it, then renamed), and
    is owner-only like the volume it holds; the operator can widen it afterwards.
    """
    with whole_file(path) as (fd, partial):
        try:
            os.ftruncate(fd, device.size)  # a sparse file of zeros: only data is written
        finally:
            os.close(fd)
        with FileDevice(partial) as image:
            written = copy_into(device, image, target_is_zero=True, progress=progress)
    return written
