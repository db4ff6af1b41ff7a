"""Copying one block device onto another: the one copy loop of the project.

Full clones, raw image imports and exports all go through ``copy_into``. It asks the source
which ranges hold data (``BlockDevice.extents``: a pool's mapping, a file's holes), so
unallocated space is skipped without being read, and copies data 8 MiB at a time, by the
first way that works:
- the target copies it itself (``copy_from``: two devices of one pool, whose chunks the
  kernel copies inside the data file, one write per physically consecutive run);
- the source hands it to the kernel (``copy_to_file``: a pool's chunks, or a file, into a
  regular file on the same file system, by ``copy_file_range``);
- it is read here, and pieces that are all zeros are not written (or are unmapped, when
  the target held data before). Once a way fails it is not tried again.
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
    within = True  # dst may copy from src itself (one pool) until it says it cannot
    written = done = 0
    while done < total:
        for length, flags in src.extents(done, total - done):
            end = done + length
            if flags & (HOLE | ZERO):
                if not target_is_zero:
                    dst.write_zeroes(done, length)
                done = end
                if progress:
                    progress(done, total)
            while done < end:  # data, a piece at a time (progress; bounded lock holds)
                step = min(PIECE, end - done)
                if within and dst.copy_from(src, done, step):
                    written += step
                elif target is not None and src.copy_to_file(done, step, target):
                    within = False
                    written += step
                else:
                    within, target = False, None  # read and write from here on
                    view = buf[:step]
                    src.readinto(done, view)
                    written += _put(dst, done, view, target_is_zero)
                done += step
                if progress:
                    progress(done, total)
    dst.flush()
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
