"""The pool's fixed shape (chunk size, overlay block size, tree fan-out) and the limits on inputs.

Invariant: a pool's geometry is set at creation and never changes, so every layer can
derive a device's tree height from its size alone.
"""

import dataclasses

from evs_driver import exception
from evs_driver.rowstore.overlays import BLOCKS

DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_DEVICE_SIZE = 1 << 60
MAX_CHUNKS = (1 << 32) - 2  # chunk numbers are stored plus one in uint32 leaf entries
MAX_NAME_BYTES = 255
DEFAULT_BITS = 10  # 1024 entries: a 4 KiB node


def height_for(chunks: int, bits: int = DEFAULT_BITS) -> int:
    """Number of tree levels needed to address ``chunks`` slots (at least 1)."""
    height = 1
    while 1 << (bits * height) < chunks:
        height += 1
    return height


@dataclasses.dataclass(frozen=True, slots=True)
class Geometry:
    """Sizes every layer of one pool agrees on."""

    chunk_size: int
    node_bits: int
    capacity_chunks: int

    @classmethod
    def new(cls, capacity: int, chunk_size: int, node_bits: int) -> "Geometry":
        """The geometry of a new pool of ``capacity`` bytes (rounded down to whole chunks)."""
        validate_chunk_size(chunk_size)
        if not isinstance(node_bits, int) or not 2 <= node_bits <= 12:
            raise exception.InvalidInput(reason=f"node_bits {node_bits!r} must be from 2 to 12")
        validate_size(capacity, "capacity")
        chunks = capacity // chunk_size
        if not 1 <= chunks <= MAX_CHUNKS:
            raise exception.InvalidSize(
                reason=f"capacity {capacity} must hold 1 to {MAX_CHUNKS} chunks of {chunk_size} bytes"
            )
        return cls(chunk_size, node_bits, chunks)

    @property
    def block_size(self) -> int:
        """Bytes of one overlay block."""
        return self.chunk_size // BLOCKS

    @property
    def capacity(self) -> int:
        """Bytes of data the pool can hold."""
        return self.capacity_chunks * self.chunk_size

    def chunks(self, size: int) -> int:
        """Chunks a device of ``size`` bytes spans."""
        return -(-size // self.chunk_size)

    def height(self, size: int) -> int:
        """Levels of the tree of a device of ``size`` bytes."""
        return height_for(self.chunks(size), self.node_bits)


def validate_chunk_size(chunk_size) -> None:
    """``InvalidInput`` unless ``chunk_size`` is a power of two in the allowed range."""
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
    """``InvalidSize`` unless ``size`` is a whole number of bytes in the allowed range."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise exception.InvalidSize(
            reason=f"{what} must be an integer number of bytes, got {size!r}"
        )
    if size <= 0 or size > MAX_DEVICE_SIZE:
        raise exception.InvalidSize(
            reason=f"{what} {size} must be greater than 0 and at most {MAX_DEVICE_SIZE} bytes"
        )


def validate_name(name) -> None:
    """``InvalidInput`` unless ``name`` is a non-empty string of at most 255 UTF-8 bytes."""
    if not isinstance(name, str) or not name or len(name.encode()) > MAX_NAME_BYTES:
        raise exception.InvalidInput(
            reason=f"device name {name!r} must be a non-empty string of at most "
            f"{MAX_NAME_BYTES} UTF-8 bytes"
        )
