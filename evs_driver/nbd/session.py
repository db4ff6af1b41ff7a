"""What negotiation settles for a connection: block sizes, transmission flags, the session."""

import dataclasses

from evs_driver import exception
from evs_driver.blockdev import BlockDevice
from evs_driver.nbd import protocol as p
from evs_driver.nbd.exports import Export
from evs_driver.nbd.metacontext import MetaContext


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Block size constraints advertised with NBD_INFO_BLOCK_SIZE."""

    minimum: int = 1
    preferred: int = 4096
    maximum: int = 32 * 1024 * 1024

    def __post_init__(self):
        if not (
            _power_of_two(self.minimum)
            and _power_of_two(self.preferred)
            and self.minimum <= min(self.preferred, 65536)
            and self.preferred <= self.maximum < 2**32
            and self.maximum % self.minimum == 0
        ):
            raise exception.InvalidInput(
                reason=f"NBD block sizes minimum={self.minimum} preferred={self.preferred} "
                f"maximum={self.maximum}: minimum and preferred must be powers of 2, "
                "minimum <= 64 KiB, minimum <= preferred <= maximum < 4 GiB and maximum a "
                "multiple of minimum"
            )


@dataclasses.dataclass(frozen=True)
class Session:
    """What the handshake agreed on: the export, its open device, the transmission flags,
    whether replies are structured and which metadata contexts BLOCK_STATUS reports."""

    export: Export
    device: BlockDevice
    size: int
    flags: int
    structured: bool = False
    contexts: tuple[MetaContext, ...] = ()


def transmission_flags(device: BlockDevice, read_only: bool) -> int:
    """Transmission flags for an export served from ``device``."""
    flags = p.TFLAG_HAS_FLAGS | p.TFLAG_SEND_FLUSH
    if read_only:
        # Nothing can change, so every connection sees the same bytes.
        return flags | p.TFLAG_READ_ONLY | p.TFLAG_CAN_MULTI_CONN
    flags |= p.TFLAG_SEND_FUA | p.TFLAG_SEND_TRIM | p.TFLAG_SEND_WRITE_ZEROES
    if getattr(device, "can_multi_conn", False):
        flags |= p.TFLAG_CAN_MULTI_CONN
    return flags


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0
