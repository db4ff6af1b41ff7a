"""Raw images in and out of block devices: zero blocks are skipped, not written."""

import os
from collections.abc import Callable

from evs_driver import exception

BLOCK = 1024 * 1024
GRAIN = 64 * 1024  # zero detection granularity: the default chunk size of a local pool
Progress = Callable[[int, int], None]


def _is_zero(view: memoryview, zero: bytes) -> bool:
    return view == zero[: len(view)]


def import_file(path: str, device, progress: Progress | None = None) -> int:
    """Copy the raw image at ``path`` onto ``device``; the rest of the device reads as zeros.

    Zero blocks are unmapped instead of written, so a sparse image stays thin. Returns the
    number of bytes that were written as data.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after size checks
    except OSError as exc:
        raise exception.InvalidInput(reason=f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        total = os.fstat(handle.fileno()).st_size
        if total > device.size:
            raise exception.InvalidSize(
                reason=f"{path} holds {total} bytes but the volume has only {device.size}; "
                "extend the volume or create a larger one"
            )
        buf = bytearray(BLOCK)
        zero = bytes(BLOCK)
        written = done = 0
        while done < total:
            view = memoryview(buf)[: min(BLOCK, total - done)]
            got = handle.readinto(view)
            if not got:
                raise exception.InvalidInput(reason=f"{path} shrank while it was read")
            written += _put(device, done, view[:got], zero)
            done += got
            if progress:
                progress(done, total)
    if total < device.size:
        device.write_zeroes(total, device.size - total)
    device.flush()
    return written


def _put(device, offset: int, view: memoryview, zero: bytes) -> int:
    """Write the non-zero grains of ``view`` (runs coalesced), unmap the zero ones."""
    written = 0
    start = 0
    while start < len(view):
        is_zero = _is_zero(view[start : start + GRAIN], zero)
        end = start + GRAIN
        while end < len(view) and _is_zero(view[end : end + GRAIN], zero) == is_zero:
            end += GRAIN
        end = min(end, len(view))
        if is_zero:
            device.write_zeroes(offset + start, end - start)
        else:
            device.write(offset + start, view[start:end])
            written += end - start
        start = end
    return written


def export_file(device, path: str, progress: Progress | None = None) -> int:
    """Write ``device`` to a raw (sparse) image at ``path``; returns bytes written as data.

    The image appears at ``path`` only when complete (written beside it, then renamed).
    """
    partial = f"{path}.partial"
    try:
        # Owner-only like the volume it holds; the operator can widen it afterwards.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        handle = open(fd, "wb")  # noqa: SIM115 - closed in the with block below
    except OSError as exc:
        raise exception.InvalidInput(reason=f"cannot write {path}: {exc.strerror}") from exc
    try:
        written = _copy_out(device, handle, progress)
    except BaseException:
        handle.close()
        os.unlink(partial)
        raise
    handle.close()
    os.replace(partial, path)
    return written


def _copy_out(device, handle, progress: Progress | None) -> int:
    total = device.size
    buf = bytearray(BLOCK)
    zero = bytes(BLOCK)
    written = done = 0
    while done < total:
        view = memoryview(buf)[: min(BLOCK, total - done)]
        device.readinto(done, view)
        if not _is_zero(view, zero):
            handle.seek(done)
            handle.write(view)
            written += len(view)
        done += len(view)
        if progress:
            progress(done, total)
    handle.truncate(total)
    handle.flush()
    os.fsync(handle.fileno())
    return written
