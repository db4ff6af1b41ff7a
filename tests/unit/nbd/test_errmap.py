"""Every exception a device may raise maps to one of the NBD protocol's error values."""

import errno

import pytest

from evs_driver import exception
from evs_driver.nbd.errmap import nbd_error


@pytest.mark.parametrize(
    "exc,expected",
    [
        (exception.ReadOnlyDevice(name="s"), 1),
        (OSError(errno.EROFS, "ro"), 1),
        (OSError(errno.EACCES, "denied"), 1),
        (exception.EVSError("x"), 5),
        (exception.NotFound(kind="Volume", name="v"), 5),
        (exception.PoolBusy(path="p", holder="h"), 5),
        (OSError(errno.EIO, "io"), 5),
        (OSError(None, "no errno"), 5),
        (ValueError("bug"), 5),
        (MemoryError(), 12),
        (OSError(errno.ENOMEM, "mem"), 12),
        (exception.InvalidInput(reason="r"), 22),
        (exception.OutOfRange(device="d", offset=1, length=2, size=0), 22),
        (exception.PoolFull(pool="p", detail="d"), 28),
        (OSError(errno.EDQUOT, "quota"), 28),
        (OSError(errno.EFBIG, "big"), 75),
        (OSError(errno.EOVERFLOW, "over"), 75),
        (OSError(errno.ENOTSUP, "unsup"), 95),
        (OSError(errno.ESHUTDOWN, "down"), 108),
    ],
)
def test_nbd_error(exc, expected):
    assert nbd_error(exc) == expected
