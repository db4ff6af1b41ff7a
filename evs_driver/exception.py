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


class FileSystemFull(PoolFull):
    message = (
        "Pool %(pool)s is full: the file system under it has no space left (%(detail)s); "
        "free space there and retry."
    )


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


class CatalogError(ConfigError):
    message = "The catalog %(path)s (under state_path) cannot be used: %(reason)s"


class CatalogFull(CatalogError):
    code = errno.ENOSPC


class BackendError(EVSError):
    message = "Backend %(backend)s failed: %(reason)s"


class BackendUnavailable(EVSError):
    """The backend's storage is not there now; the other backends keep working."""

    message = "Backend %(backend)s is unavailable: %(reason)s"
    code = errno.ENODEV


class PoolMissing(BackendUnavailable):
    message = (
        "Backend %(backend)s is unavailable: its pool %(path)s is missing or empty, but a pool "
        "was created there before (is a file system not mounted?). Nothing was changed. Mount "
        "it again, or run `evs pool create --backend %(backend)s` to start a new, empty pool."
    )


class InvalidStatus(InvalidOperation):
    message = "%(kind)s %(name)s is %(status)s; %(action)s needs it to be %(expected)s."
    code = errno.EBUSY


class StatusChanged(InvalidStatus):
    message = (
        "%(kind)s %(name)s changed meanwhile: it is %(status)s, not %(expected)s "
        "(another request or an operator's reset-state won)."
    )


class VolumeAttached(InvalidStatus):
    message = (
        "Volume %(name)s is in-use (attached); %(action)s needs it detached: run "
        "`evs volume unserve %(name)s` first."
    )


class SnapshotLimitExceeded(InvalidOperation):
    message = (
        "Volume %(volume)s already has %(count)d snapshots; the limit "
        "(max_snapshots_per_volume) is %(limit)d. Delete one first (a schedule's "
        "autobk_snapshot_ ones do not count)."
    )
    code = errno.EDQUOT


class VolumeHasSnapshots(InvalidOperation):
    message = (
        "Volume %(volume)s has %(count)d snapshot(s); delete them first or use cascade "
        "(--cascade) to delete them with the volume."
    )
    code = errno.ENOTEMPTY


class OverSubscription(InvalidOperation):
    message = (
        "Creating %(requested)d GiB on backend %(backend)s would provision %(provisioned)d GiB, "
        "over the allowed %(allowed)d GiB (total %(total)d GiB, max_over_subscription_ratio "
        "%(ratio)s, reserved_percentage %(reserved)d%%)."
    )
    code = errno.ENOSPC


class NoCapacity(OverSubscription):
    message = (
        "Backend %(backend)s has no capacity left for %(requested)d GiB: the file system "
        "holding it is full; free space there and retry."
    )


class AmbiguousName(InvalidInput):
    message = "%(count)d %(kind)ss are named %(name)s; use the id instead."


class AmbiguousExportName(InvalidInput):
    message = (
        "%(name)s cannot be an NBD export name: it is also %(other)s, so a client could "
        "reach the wrong device; serve it by id (%(id)s) instead."
    )


class AttachNeedsService(InvalidOperation):
    message = (
        "Attaching %(name)s needs the evs-volume service (it serves the NBD export); "
        "start it and retry."
    )
    code = errno.EOPNOTSUPP


class ConcurrentOperation(InvalidOperation):
    message = "%(kind)s %(name)s is busy: %(reason)s"
    code = errno.EBUSY


class InGroupSnapshot(InvalidOperation):
    message = (
        "Snapshot %(name)s is part of group snapshot %(group_snapshot)s: delete the group "
        "snapshot instead (evs group snapshot-delete %(group_snapshot)s)."
    )
    code = errno.EBUSY


class NBDProtocolError(EVSError):
    message = "NBD client broke the protocol: %(reason)s"
    code = errno.EPROTO


class NBDDisconnected(EVSError):
    message = "NBD client disconnected %(where)s."
    code = errno.ECONNRESET


class NBDExportFull(EVSError):
    message = "NBD export %(name)s already has its maximum of %(limit)d connections"
    code = errno.EBUSY


class NBDTimeout(EVSError):
    message = "NBD client dropped: %(reason)s"
    code = errno.ETIMEDOUT


class NBDHangUp(EVSError):
    message = "NBD server hung up on the client: %(reason)s"
    code = errno.ECONNABORTED


class ServiceUnavailable(EVSError):
    message = "The evs-volume service at %(path)s is not answering: %(reason)s"
    code = errno.ECONNREFUSED


class ServiceRunning(EVSError):
    message = "An evs-volume service already runs for %(state_path)s (%(reason)s)."
    code = errno.EBUSY


class UnknownProtocol(InvalidInput):
    message = "Unknown attach protocol %(protocol)r; use one of %(choices)s."


class InvalidInitiator(InvalidInput):
    message = "%(name)r is not a valid %(kind)s."


class TargetModuleMissing(EVSError):
    message = (
        "%(what)s need %(module)s, which this host does not have; install or load it "
        "(e.g. modprobe) and retry."
    )
    code = errno.EOPNOTSUPP


class NoFreeDevice(EVSError):
    message = (
        "No free kernel NBD device: /dev/nbd0 to /dev/nbd%(last)d are all in use "
        "(nbd_max_devices = %(limit)d); detach a volume or raise nbd_max_devices."
    )
    code = errno.ENOSPC

    def __init__(self, message: str | None = None, **kwargs):
        if "limit" in kwargs:
            kwargs.setdefault("last", kwargs["limit"] - 1)
        super().__init__(message, **kwargs)


class AttachFailed(EVSError):
    message = "Attach failed: %(reason)s"


class DetachFailed(EVSError):
    message = "Detach failed: %(reason)s"


class BackendTimeout(BackendUnavailable):
    message = (
        "Backend %(backend)s: %(action)s timed out after %(timeout)d s: %(reason)s. Nothing was "
        "left half-made; retry when the cluster answers again."
    )
    code = errno.ETIMEDOUT


class InvalidReference(InvalidInput):
    message = "Cannot manage %(ref)s: %(reason)s"


class InvalidSchedule(InvalidInput):
    message = "Invalid schedule: %(reason)s"


class ScheduleExists(AlreadyExists):
    message = (
        "Volume %(volume)s already has schedule %(schedule)s; a volume has one schedule: "
        "run `evs schedule delete %(schedule)s` first to replace it."
    )


class NoSchedule(NotFound):
    message = (
        "Volume %(name)s has no snapshot schedule; create one with "
        "`evs schedule create %(name)s --every 1h --keep 24`."
    )


class NotSupportedByBackend(InvalidOperation):
    message = "Backend %(backend)s (%(kind)s) does not support %(what)s%(hint)s."
    code = errno.EOPNOTSUPP

    def __init__(self, message: str | None = None, **kwargs):
        kwargs.setdefault("hint", "")
        super().__init__(message, **kwargs)


class DiffStreamError(InvalidInput):
    message = "%(source)s is not a usable evs diff stream: %(reason)s"


class DiffBaseMismatch(InvalidOperation):
    message = "Volume %(volume)s cannot take this diff stream: %(reason)s"
