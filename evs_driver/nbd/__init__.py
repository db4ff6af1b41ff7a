"""An NBD server (fixed newstyle, simple replies) serving ``BlockDevice`` exports."""

from evs_driver.nbd.exports import Export, ExportRegistry, Opener
from evs_driver.nbd.filedev import FileDevice
from evs_driver.nbd.handshake import BlockSizes
from evs_driver.nbd.limits import Limits, Slots
from evs_driver.nbd.server import NBDServer

__all__ = [
    "BlockSizes",
    "Export",
    "ExportRegistry",
    "FileDevice",
    "Limits",
    "NBDServer",
    "Opener",
    "Slots",
]
