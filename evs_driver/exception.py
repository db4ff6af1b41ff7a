"""Every error evs_driver raises, each with a message a user can act on.

Errors carry an ``errno``-style ``code`` where one fits, so the NBD server and the
CLI can map them without string matching.
"""

import errno


class EVSError(Exception):
    """Base class: ``message`` is formatted from the keyword arguments."""

    message = "An unknown error occurred."
    code = errno.EIO

    def __init__(self, message: str | None = None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            message = self.message % kwargs if kwargs else self.message
        self.msg = message
        super().__init__(message)


class InvalidInput(EVSError):
    message = "Invalid input: %(reason)s"
    code = errno.EINVAL


class InvalidSize(InvalidInput):
    message = "Invalid size: %(reason)s"


class OutOfRange(InvalidInput):
    message = (
        "I/O out of range on %(device)s: offset %(offset)d + length %(length)d "
        "exceeds the device size %(size)d"
    )


class NotFound(EVSError):
    message = "%(kind)s %(name)s not found."
    code = errno.ENOENT


class AlreadyExists(EVSError):
    message = "%(kind)s %(name)s already exists."
    code = errno.EEXIST


class ReadOnlyDevice(EVSError):
    message = "%(name)s is a snapshot and is read-only."
    code = errno.EPERM


class InvalidOperation(EVSError):
    message = "%(reason)s"
    code = errno.EINVAL


class PoolFull(EVSError):
    message = "Pool %(pool)s is full: no free chunk for a write that needs new space (%(detail)s)."
    code = errno.ENOSPC


class PoolBusy(EVSError):
    message = "Pool %(path)s is in use by another process (%(holder)s)."
    code = errno.EBUSY


class PoolCorrupt(EVSError):
    message = "Pool %(path)s is damaged: %(reason)s"


class InvalidPool(EVSError):
    message = "%(path)s is not a usable evs pool: %(reason)s"
    code = errno.EINVAL


class ConfigError(EVSError):
    message = "Invalid configuration: %(reason)s"
    code = errno.EINVAL


class BackendError(EVSError):
    message = "Backend %(backend)s failed: %(reason)s"
