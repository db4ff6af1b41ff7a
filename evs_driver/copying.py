"""Copying one block device onto another: the one copy loop of the project.

Full clones, raw image imports and exports all go through ``copy_into``. It asks the source
which ranges hold data (``BlockDevice.extents``: a pool's mapping, a file's holes), so
unallocated space is skipped without being read. When the target is a regular file and
the source can hand its data to the kernel (``copy_to_file``: a pool's chunks, a file on
the same file system), the kernel copies it (``copy_file_range``); otherwise, or when the
kernel refuses, data is read in large pieces, and pieces that are all zeros are not
written (or are unmapped, when the target held data before).
"""

from collections.abc import Callable

from evs_driver.blockdev import HOLE, ZERO, BlockDevice
from evs_driver.units import KiB, MiB

PIECE = 8 * MiB  # read size: large enough that per-call costs vanish
GRAIN = 64 * KiB  # zero detection: the default chunk of a local pool
Progress = Callable[[int, int], None]
_ZEROS = bytes(PIECE)


def copy_into(
    src: BlockDevice,
    dst: BlockDevice,
    target_is_zero: bool,
    progress: Progress | None = None,
) -> int:
    """Copy all of ``src`` onto the start of ``dst``, then flush ``dst``; returns the bytes
    written as data. ``target_is_zero``: ``dst`` reads as zeros already (a new volume or
    file), so ranges that read as zeros need no work at all."""
    total = src.size
    buf = memoryview(bytearray(min(PIECE, max(total, 1))))
    target = dst.plain_file()
    written = done = 0
    while done < total:
        for length, flags in src.extents(done, total - done):
            if flags & (HOLE | ZERO):
                if not target_is_zero:
                    dst.write_zeroes(done, length)
            elif target is not None and src.copy_to_file(done, length, target):
                written += length
            else:
                target = None  # the kernel cannot: read and write from here on
                written += _copy_data(src, dst, done, length, buf, target_is_zero)
            done += length
            if progress:
                progress(done, total)
    dst.flush()
    return written


def _copy_data(src, dst, offset: int, length: int, buf: memoryview, target_is_zero: bool) -> int:
    written = 0
    end = offset + length
    while offset < end:
        view = buf[: min(len(buf), end - offset)]
        src.readinto(offset, view)
        written += _put(dst, offset, view, target_is_zero)
        offset += len(view)
    return written


def _put(dst, offset: int, view: memoryview, target_is_zero: bool) -> int:
    """Write the non-zero grains of ``view`` (runs coalesced); zero runs are skipped, or
    unmapped when the target may hold other data there."""
    if view == _ZEROS[: len(view)]:
        if not target_is_zero:
            dst.write_zeroes(offset, len(view))
        return 0
    written = start = 0
    while start < len(view):
        is_zero = _is_zero(view[start : start + GRAIN])
        end = start + GRAIN
        while end < len(view) and _is_zero(view[end : end + GRAIN]) == is_zero:
            end += GRAIN
        end = min(end, len(view))
        if not is_zero:
            dst.write(offset + start, view[start:end])
            written += end - start
        elif not target_is_zero:
            dst.write_zeroes(offset + start, end - start)
        start = end
    return written


def _is_zero(view: memoryview) -> bool:
    return view == _ZEROS[: len(view)]
