"""Devices as the pool keeps them, what callers see of them, and the limits on their inputs."""

import dataclasses

from evs_driver import exception
from evs_driver.rowstore.rwlock import RWLock

DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_DEVICE_SIZE = 1 << 60
MAX_CHUNKS = (1 << 32) - 2  # chunk numbers are stored plus one in uint32 leaf entries
MAX_NAME_BYTES = 255
VOLUME, SNAPSHOT = "volume", "snapshot"


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What a caller may know of a volume or snapshot."""

    name: str
    kind: str
    size: int
    origin: str | None
    mapped_bytes: int
    created_at: float


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    """Pool-wide space, in bytes."""

    total_bytes: int
    used_bytes: int
    free_bytes: int
    metadata_bytes: int
    provisioned_bytes: int
    volumes: int
    snapshots: int
    chunk_size: int


class Device:
    __slots__ = (
        "id",
        "name",
        "kind",
        "size",
        "root",
        "origin",
        "mapped",
        "created_at",
        "lock",
        "deleted",
        "remapping",
    )

    def __init__(self, id, name, kind, size, root, origin, mapped, created_at):
        self.id, self.name, self.kind, self.size = id, name, kind, size
        self.root, self.origin, self.mapped, self.created_at = root, origin, mapped, created_at
        self.lock = RWLock()
        self.deleted = False
        #: The last write changed the mapping (a hint: the next one probably will too).
        self.remapping = False

    def row(self) -> tuple:
        return (
            self.id,
            self.name,
            self.kind,
            self.size,
            self.root,
            self.origin,
            self.mapped,
            self.created_at,
        )


def validate_chunk_size(chunk_size) -> None:
    if (
        not isinstance(chunk_size, int)
        or isinstance(chunk_size, bool)
        or chunk_size < MIN_CHUNK_SIZE
        or chunk_size > MAX_CHUNK_SIZE
        or chunk_size & (chunk_size - 1)
    ):
        raise exception.InvalidInput(
            reason=f"chunk size {chunk_size!r} must be a power of two from {MIN_CHUNK_SIZE} "
            f"to {MAX_CHUNK_SIZE} bytes"
        )


def validate_size(size, what: str = "size") -> None:
    if not isinstance(size, int) or isinstance(size, bool):
        raise exception.InvalidSize(
            reason=f"{what} must be an integer number of bytes, got {size!r}"
        )
    if size <= 0 or size > MAX_DEVICE_SIZE:
        raise exception.InvalidSize(
            reason=f"{what} {size} must be greater than 0 and at most {MAX_DEVICE_SIZE} bytes"
        )


def validate_name(name) -> None:
    if not isinstance(name, str) or not name or len(name.encode()) > MAX_NAME_BYTES:
        raise exception.InvalidInput(
            reason=f"device name {name!r} must be a non-empty string of at most "
            f"{MAX_NAME_BYTES} UTF-8 bytes"
        )
