"""Metadata contexts: what NBD_CMD_BLOCK_STATUS reports about a range of an export.

A context answers with ``(length, flags)`` runs whose flags it defines. Contexts come from
namespaces that match the client's queries (NBD_OPT_LIST/SET_META_CONTEXT, ``namespace:leaf``);
``base:allocation`` (holes and zeros, from ``BlockDevice.extents``) is always offered. Further
namespaces are given to the server (for every export) or to one export: ``evs:changed-since:S``
(``changes.py``, as QEMU's ``qemu:dirty-bitmap:NAME``) is one of the latter.
"""

import dataclasses
import logging
import struct
from collections.abc import Callable, Iterable
from typing import Protocol

from evs_driver.blockdev import MAX_EXTENTS, BlockDevice, Extents
from evs_driver.nbd.protocol import MAX_NAME_LENGTH

LOG = logging.getLogger(__name__)
_U32 = struct.Struct(">I")


@dataclasses.dataclass(frozen=True)
class MetaContext:
    """One context: its full name, how it answers a query on a connection's device, and
    the flags that are true of any range (the answer when the query fails)."""

    name: str
    query: Callable[[BlockDevice, int, int], Extents]
    unknown: int = 0


class Namespace(Protocol):
    """The contexts under one namespace (the part of a context name before the colon)."""

    name: str

    def contexts(self, leaf: str, listing: bool) -> list[MetaContext]:
        """The contexts query ``name:leaf`` selects; ``listing`` (LIST) may use wildcards."""


def _allocation(device: BlockDevice, offset: int, length: int) -> Extents:
    query = getattr(device, "extents", None)
    return query(offset, length) if query is not None else [(length, 0)]


ALLOCATION = MetaContext("base:allocation", _allocation)


class BaseNamespace:
    """The protocol's own namespace: ``base:allocation``; ``base:`` lists it."""

    name = "base"

    def contexts(self, leaf: str, listing: bool) -> list[MetaContext]:
        """``allocation``, or every context of the namespace for an empty leaf when listing."""
        return [ALLOCATION] if leaf == "allocation" or (listing and not leaf) else []


BASE = BaseNamespace()


def parse_request(data: bytes) -> tuple[bytes, list[str]] | None:
    """Split LIST/SET_META_CONTEXT data into (export name, queries); None if malformed."""
    if len(data) < 8:
        return None
    (name_length,) = _U32.unpack_from(data)
    if name_length > MAX_NAME_LENGTH or 4 + name_length + 4 > len(data):
        return None
    name = data[4 : 4 + name_length]
    position = 4 + name_length
    (count,) = _U32.unpack_from(data, position)
    position += 4
    queries = []
    for _ in range(count):  # each query takes at least 4 bytes, so data bounds the loop
        if position + 4 > len(data):
            return None
        (length,) = _U32.unpack_from(data, position)
        query = data[position + 4 : position + 4 + length]
        if len(query) != length or length > MAX_NAME_LENGTH:
            return None
        try:
            queries.append(query.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        position += 4 + length
    return (name, queries) if position == len(data) else None


def select(namespaces: Iterable[Namespace], queries: list[str], listing: bool):
    """The contexts ``queries`` select, in order without repeats; None when a query has no
    namespace. No query lists every context (LIST) or selects none (SET)."""
    namespaces = list(namespaces)
    if not queries:
        found = [c for n in namespaces for c in n.contexts("", True)] if listing else []
        return list(dict.fromkeys(found))
    found = []
    for query in queries:
        space, colon, leaf = query.partition(":")
        if not colon or not space:
            return None
        for namespace in namespaces:
            if namespace.name == space:  # unknown namespaces are ignored, as the protocol says
                found += namespace.contexts(leaf, listing)
    return list(dict.fromkeys(found))


def answer(context: MetaContext, device, offset: int, length: int, one: bool) -> Extents:
    """The context's runs for a BLOCK_STATUS request, made safe to send: within the request,
    at most ``MAX_EXTENTS`` (one with ``one``), each non-empty and 32-bit."""
    safe = []
    try:
        left = length
        for run, flags in context.query(device, offset, length)[: 1 if one else MAX_EXTENTS]:
            run = min(int(run), left)
            if run <= 0:
                break
            safe.append((run, int(flags) & 0xFFFFFFFF))
            left -= run
            if not left:
                break
    except Exception as exc:
        # ``unknown`` is always true (base:allocation: allocated, not known zero; the client
        # reads the data), so a failed query costs the client work, never a wrong answer.
        LOG.warning("NBD %s query %d+%d failed: %s", context.name, offset, length, exc)
        safe = []
    return safe or [(length, context.unknown)]
