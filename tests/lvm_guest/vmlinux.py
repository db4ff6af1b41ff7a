"""Extract the uncompressed ELF kernel from a bzImage, so QEMU can boot it via its PVH entry.

A bzImage carries the kernel as a compressed blob after a real-mode setup stub; like
the kernel's own ``scripts/extract-vmlinux``, look for each compressor's magic and keep
the first candidate that decompresses to an ELF image.
"""

import bz2
import gzip
import lzma
import zlib

ELF_MAGIC = b"\x7fELF"


def _xz(blob: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)


def _lzma(blob: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(blob)


def _gzip(blob: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)


def _bzip2(blob: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(blob)


# (magic, decompressor): the stream formats Python's standard library can read.
_FORMATS = (
    (b"\xfd7zXZ\x00", _xz),
    (b"\x1f\x8b\x08", _gzip),
    (b"\x5d\x00\x00\x00", _lzma),
    (b"BZh", _bzip2),
)


def extract_vmlinux(bzimage: bytes) -> bytes:
    """Return the ELF kernel inside ``bzimage``; raise ``ValueError`` when none is found."""
    if bzimage.startswith(ELF_MAGIC):
        return bzimage
    for magic, decompress in _FORMATS:
        start = bzimage.find(magic)
        while start != -1:
            try:
                image = decompress(bzimage[start:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, gzip.BadGzipFile):
                image = b""
            if image.startswith(ELF_MAGIC):
                return image
            start = bzimage.find(magic, start + 1)
    raise ValueError("no ELF kernel found in the image (unknown compression?)")
