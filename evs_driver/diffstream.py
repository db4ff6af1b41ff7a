"""The incremental stream of ``evs snapshot export --from`` and ``evs volume import-diff``.

Layout (integers big-endian)::

    "EVSDIFF\\0"  u32 version  u32 header length  header (UTF-8 JSON)
    records, in increasing offset order, none overlapping:
      "D" u64 offset u32 length  data  sha256(record without its digest)   data extent
      "Z" u64 offset u64 length        sha256(record without its digest)   reads as zeros
    "E" u64 records u64 data bytes  sha256(every byte before this digest)    end

The header names the volume, the snapshot the stream starts from (``from``, null for a
full stream: everything outside its extents reads as zeros) and the one it leads to
(``to``), with their sizes. Each record carries its own checksum, checked before it is
applied, and the end record one of the whole stream, so a stream cut short, reordered or
altered is refused.
"""

import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterator
from typing import BinaryIO

from evs_driver import exception

MAGIC = b"EVSDIFF\0"
VERSION = 1
MAX_HEADER = 64 * 1024
MAX_DATA = 4 * 1024 * 1024  # bytes of one data record; longer extents take several
DATA, ZERO, END = b"D", b"Z", b"E"
_START = struct.Struct(">8sII")
_DATA = struct.Struct(">QI")
_ZERO = struct.Struct(">QQ")
_END = struct.Struct(">QQ")
DIGEST = 32


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One extent of a stream: ``data`` for a data record, None for zeros."""

    offset: int
    length: int
    data: bytes | None


class StreamWriter:
    """Writes a stream to ``out``; call ``data``/``zero`` in offset order, then ``finish``."""

    def __init__(self, out: BinaryIO, header: dict):
        self._out = out
        self._whole = hashlib.sha256()
        self.records = self.data_bytes = 0
        self._position = 0
        text = json.dumps(header, sort_keys=True).encode()
        self._emit(_START.pack(MAGIC, VERSION, len(text)) + text)

    def data(self, offset: int, data: bytes) -> None:
        """An extent holding ``data`` (split into records of at most ``MAX_DATA``)."""
        view = memoryview(data)
        for start in range(0, len(view), MAX_DATA):
            piece = view[start : start + MAX_DATA]
            self._record(DATA + _DATA.pack(offset + start, len(piece)), piece)
            self.data_bytes += len(piece)

    def zero(self, offset: int, length: int) -> None:
        """An extent that reads as zeros."""
        self._record(ZERO + _ZERO.pack(offset, length))

    def finish(self) -> None:
        """The end record, with the whole stream's checksum."""
        self._emit(END + _END.pack(self.records, self.data_bytes))
        self._out.write(self._whole.digest())
        self._out.flush()

    def _record(self, head: bytes, body=b"") -> None:
        offset = struct.unpack_from(">Q", head, 1)[0]
        if offset < self._position:
            raise ValueError(f"extent at {offset} is before the end of the previous one")
        self._position = offset + (len(body) if head[:1] == DATA else _ZERO.unpack(head[1:])[1])
        digest = hashlib.sha256(head)
        digest.update(body)
        self._emit(head)
        if body:
            self._emit(body)
        self._emit(digest.digest())
        self.records += 1

    def _emit(self, data) -> None:
        self._whole.update(data)
        self._out.write(data)


class StreamReader:
    """Reads and checks a stream from ``source`` (``name`` says where it came from)."""

    def __init__(self, source: BinaryIO, name: str):
        self._in = source
        self.name = name
        self._whole = hashlib.sha256()
        magic, version, length = _START.unpack(self._take(_START.size, "its start"))
        if magic != MAGIC:
            raise self._bad("it does not start with the evs diff stream's magic")
        if version != VERSION:
            raise self._bad(f"it is version {version}; this evs reads version {VERSION}")
        if length > MAX_HEADER:
            raise self._bad(f"its header claims {length} bytes")
        try:
            self.header = json.loads(self._take(length, "its header"))
        except ValueError as exc:
            raise self._bad(f"its header is not JSON: {exc}") from None
        _check_header(self.header, self._bad)
        self.size = self.header["to"]["size"]

    def records(self) -> Iterator[Record]:
        """Every record in order, each checked before it is given; the end record and the
        whole stream's checksum are checked after the last."""
        count = data_bytes = position = 0
        while True:
            kind = self._take(1, "a record")
            if kind == END:
                self._end(count, data_bytes)
                return
            if kind == DATA:
                head = self._take(_DATA.size, "a data record")
                offset, length = _DATA.unpack(head)
                if not 0 < length <= MAX_DATA:
                    raise self._bad(f"a data record at offset {offset} claims {length} bytes")
                body = self._take(length, "a data record")
            elif kind == ZERO:
                head = self._take(_ZERO.size, "a zero record")
                offset, length = _ZERO.unpack(head)
                body = b""
            else:
                raise self._bad(f"record {count + 1} has the unknown type {kind!r}")
            digest = hashlib.sha256(kind + head)
            digest.update(body)
            if self._take(DIGEST, "a record's checksum") != digest.digest():
                raise self._bad(f"the extent at offset {offset} fails its checksum")
            if offset < position or offset + length > self.size or not length:
                raise self._bad(
                    f"the extent {offset}+{length} is out of order or outside the snapshot's "
                    f"{self.size} bytes"
                )
            position = offset + length
            count += 1
            data_bytes += len(body)
            yield Record(offset, length, body if kind == DATA else None)

    def _end(self, count: int, data_bytes: int) -> None:
        records, total = _END.unpack(self._take(_END.size, "the end record"))
        expected = self._whole.digest()
        if self._exact(DIGEST, "the end record") != expected:
            raise self._bad("the stream fails its checksum")
        if (records, total) != (count, data_bytes):
            raise self._bad(f"the end record counts {records} records, the stream had {count}")
        if self._in.read(1):
            raise self._bad("there are bytes after its end")

    def _take(self, length: int, what: str) -> bytes:
        """The next ``length`` bytes, counted in the whole stream's checksum."""
        data = self._exact(length, what)
        self._whole.update(data)
        return data

    def _exact(self, length: int, what: str) -> bytes:
        data = self._in.read(length)
        if len(data) != length:
            raise self._bad(f"it ends in the middle of {what} (cut short?)")
        return data

    def _bad(self, reason: str) -> exception.DiffStreamError:
        return exception.DiffStreamError(source=self.name, reason=reason)


def _check_header(header, bad) -> None:
    """Refuse a header without what the import needs to know."""
    if not isinstance(header, dict) or header.get("format") != "evs-diff":
        raise bad("its header is not an evs diff header")
    for key in ("volume", "to"):
        if not isinstance(header.get(key), dict) or not isinstance(header[key].get("id"), str):
            raise bad(f"its header has no {key} id")
    base = header.get("from")
    if base is not None and not (isinstance(base, dict) and isinstance(base.get("id"), str)):
        raise bad("its header's from is neither null nor a snapshot")
    size = header["to"].get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise bad("its header gives no size for the snapshot")
