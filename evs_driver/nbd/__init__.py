"""An NBD server (fixed newstyle, structured replies, TLS) serving ``BlockDevice`` exports."""

from evs_driver.nbd.exports import Export, ExportRegistry, Opener
from evs_driver.nbd.limits import Limits, Slots
from evs_driver.nbd.server import NBDServer
from evs_driver.nbd.session import BlockSizes

__all__ = [
    "BlockSizes",
    "Export",
    "ExportRegistry",
    "Limits",
    "NBDServer",
    "Opener",
    "Slots",
]
