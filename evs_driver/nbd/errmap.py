"""Turn what a device raised into the NBD error value a client understands."""

import errno

from evs_driver import exception
from evs_driver.nbd import protocol

# Host errno -> NBD error; anything else becomes EIO, the generic I/O failure.
_BY_ERRNO = {
    errno.EPERM: protocol.EPERM,
    errno.EROFS: protocol.EPERM,
    errno.EACCES: protocol.EPERM,
    errno.EIO: protocol.EIO,
    errno.ENOMEM: protocol.ENOMEM,
    errno.EINVAL: protocol.EINVAL,
    errno.ENOSPC: protocol.ENOSPC,
    errno.EDQUOT: protocol.ENOSPC,
    errno.EFBIG: protocol.EOVERFLOW,
    errno.EOVERFLOW: protocol.EOVERFLOW,
    errno.ENOTSUP: protocol.ENOTSUP,
    errno.ESHUTDOWN: protocol.ESHUTDOWN,
}


def nbd_error(exc: BaseException) -> int:
    """The NBD error value for an exception raised while serving a request."""
    if isinstance(exc, exception.EVSError):
        code = exc.code
    elif isinstance(exc, MemoryError):
        code = errno.ENOMEM
    elif isinstance(exc, OSError):
        code = exc.errno
    else:
        code = None
    return _BY_ERRNO.get(code, protocol.EIO)
