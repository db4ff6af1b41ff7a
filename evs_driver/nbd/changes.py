"""``evs:changed-since:<snapshot>``: where an export differs from one of its snapshots.

QEMU's NBD server offers a dirty bitmap as ``qemu:dirty-bitmap:NAME``; this context answers
the same question from the backend's mapping, with the same flag: ``CHANGED`` (1) where the
export's data differs from the snapshot's, 0 where it is the same. A client that copied the
snapshot reads just the ``CHANGED`` runs to bring its copy up to date (``qemu-img map
--image-opts driver=nbd,...,x-dirty-bitmap=evs:changed-since:S``, ``nbdinfo
--map=evs:changed-since:S``).

The snapshot is named by id or by its name (when no other candidate shares it); which
snapshots an export may name is asked at each query, so one taken or deleted after the
export started counts. Per the NBD protocol a name that is no candidate is simply not
returned by NBD_OPT_LIST/SET_META_CONTEXT. A query that fails (the snapshot was deleted
under the connection) answers ``CHANGED``: more to copy, never a change missed.
"""

import dataclasses
from collections.abc import Callable, Sequence

from evs_driver.blockdev import CHANGED, MAX_EXTENTS, BlockDevice, Extents
from evs_driver.nbd.metacontext import MetaContext

NAMESPACE = "evs"
LEAF = "changed-since:"

Base = tuple[str, str | None]
"""A snapshot an export can be compared with: its device id and its name (None: unnamed)."""


class ChangedSinceNamespace:
    """The ``evs`` namespace of one export: a ``changed-since:`` context per candidate."""

    name = NAMESPACE

    def __init__(self, bases: Callable[[], Sequence[Base]]):
        """``bases()`` lists the snapshots the export's device can be compared with."""
        self._bases = bases

    def contexts(self, leaf: str, listing: bool) -> list[MetaContext]:
        """The context of the snapshot ``leaf`` names; listing ``evs:`` or
        ``evs:changed-since:`` gives every candidate (by name where that is unambiguous)."""
        if listing and leaf in ("", LEAF):
            return [_context(ref, base) for base, ref in _listed(self._bases())]
        if not leaf.startswith(LEAF) or leaf == LEAF:
            return []
        ref = leaf[len(LEAF) :]
        base = resolve(self._bases(), ref)
        return [_context(ref, base)] if base is not None else []


def resolve(bases: Sequence[Base], ref: str) -> str | None:
    """The id of the base ``ref`` names: an id, else the one base of that name."""
    if any(base_id == ref for base_id, _name in bases):
        return ref
    named = [base_id for base_id, name in bases if name == ref]
    return named[0] if len(named) == 1 else None


def _listed(bases: Sequence[Base]) -> list[tuple[str, str]]:
    """``(id, what to call it)`` of every base: its name when that names only it."""
    return [
        (base_id, name if name and resolve(bases, name) == base_id else base_id)
        for base_id, name in bases
    ]


@dataclasses.dataclass(frozen=True)
class _Changes:
    """The query of one base (a value: asking twice for a context selects it once)."""

    base_id: str

    def __call__(self, device: BlockDevice, offset: int, length: int) -> Extents:
        return device.changes(self.base_id, offset, length, MAX_EXTENTS)


def _context(ref: str, base_id: str) -> MetaContext:
    return MetaContext(f"{NAMESPACE}:{LEAF}{ref}", _Changes(base_id), unknown=CHANGED)
