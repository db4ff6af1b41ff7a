"""The product rules of EVS_RULES.md that need no storage: statuses, names, sizes, limits.

Each check raises an ``EVSError`` whose message names what was wrong, and changes nothing.
"""

import re
import unicodedata
import uuid

from evs_driver import exception

MAX_SIZE_GB = 1024 * 1024  # 1 PiB: keeps byte sizes far inside SQLite's 64-bit integers
MAX_TEXT_BYTES = 255
RESERVED_SNAPSHOT_PREFIX = "autobk_snapshot_"

# -- statuses (rule 7) -------------------------------------------------------------------
VOLUME_STATUSES = (
    "creating",
    "available",
    "in-use",
    "extending",
    "deleting",
    "rollbacking",
    "error",
    "error_extending",
    "error_deleting",
    "error_rollbacking",
)
SNAPSHOT_STATUSES = ("creating", "available", "deleting", "rollbacking", "error", "error_deleting")
VOLUME_BUSY = ("creating", "extending", "deleting", "rollbacking")
SNAPSHOT_BUSY = ("creating", "deleting", "rollbacking")

# Statuses each action starts from.
SNAPSHOT_SOURCE = ("available", "in-use")  # rule 2.1
REVERT_VOLUME = ("available", "error_rollbacking")  # rule 3.2
REVERT_SNAPSHOT = ("available",)
DELETE_SNAPSHOT = ("available", "error", "error_deleting")  # rule 5.1; a failed delete retries
DELETE_VOLUME = ("available", "error", "error_extending", "error_deleting", "error_rollbacking")
EXTEND_VOLUME = ("available",)
CLONE_SOURCE = ("available", "in-use")
FROM_SNAPSHOT = ("available",)
DATA_VOLUME = ("available",)  # import and export of a volume: detached only


def expect_status(kind: str, record, expected: tuple[str, ...], action: str) -> None:
    """Raise ``InvalidStatus`` unless ``record.status`` is in ``expected``."""
    if record.status in expected:
        return
    if record.status == "in-use" and "available" in expected:
        raise exception.VolumeAttached(name=record.id, action=action)
    raise exception.InvalidStatus(
        kind=kind,
        name=record.id,
        status=record.status,
        action=action,
        expected=" or ".join(expected),
    )


# -- names and sizes (rules 2.3 and 9) ----------------------------------------------------
# Characters that would let a stored name rewrite the operator's terminal or hide itself:
# control codes (escape sequences, newlines) and the bidirectional overrides.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_DESCRIPTION_WHITESPACE = frozenset("\n\t")
_CANONICAL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_unsafe_char(char: str, allowed: frozenset = frozenset()) -> bool:
    """True for a character that must not reach a terminal unescaped."""
    if char in allowed:
        return False
    return unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS


def check_text(field: str, value: str | None) -> None:
    """A name or description: at most 255 bytes of UTF-8, no control characters."""
    if value is None:
        return
    if not isinstance(value, str):
        raise exception.InvalidInput(reason=f"{field} must be a string")
    try:
        length = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise exception.InvalidInput(reason=f"{field} is not valid UTF-8 text") from exc
    if length > MAX_TEXT_BYTES:
        raise exception.InvalidInput(
            reason=f"{field} is {length} bytes of UTF-8; at most {MAX_TEXT_BYTES} are allowed"
        )
    allowed = _DESCRIPTION_WHITESPACE if field == "description" else frozenset()
    bad = next((c for c in value if is_unsafe_char(c, allowed)), None)
    if bad is not None:
        raise exception.InvalidInput(
            reason=f"{field} contains the control character U+{ord(bad):04X}; "
            "names and descriptions must be printable text"
        )


def check_name(value: str | None) -> None:
    """A volume or snapshot name: valid text that cannot be mistaken for an id (rule 9)."""
    check_text("name", value)
    if value and looks_like_id(value):
        raise exception.InvalidInput(
            reason=f"name {value!r} looks like an id (a UUID); ids and names must stay apart, "
            "so choose another name"
        )


def looks_like_id(ref: str) -> bool:
    """True for anything Python reads as a UUID (with or without dashes, braces, urn:)."""
    try:
        uuid.UUID(ref)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def is_canonical_id(ref: str) -> bool:
    """True for an id as this product writes them: a lowercase, dashed UUID."""
    return bool(_CANONICAL_ID.match(ref))


def check_snapshot_name(name: str | None) -> None:
    """A user snapshot's name: a valid name without the reserved prefix."""
    check_name(name)
    if name and name.startswith(RESERVED_SNAPSHOT_PREFIX):
        raise exception.InvalidInput(
            reason=f"the name prefix {RESERVED_SNAPSHOT_PREFIX!r} is reserved for automatic "
            "backup snapshots"
        )


def check_size(size, field: str = "size") -> int:
    """A size in whole GiB, 1 to 1 PiB; returns it as an int."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise exception.InvalidSize(reason=f"{field} must be a whole number of GiB, got {size!r}")
    if size <= 0:
        raise exception.InvalidSize(reason=f"{field} must be at least 1 GiB, got {size}")
    if size > MAX_SIZE_GB:
        raise exception.InvalidSize(
            reason=f"{field} {size} GiB is larger than the largest volume ({MAX_SIZE_GB} GiB)"
        )
    return size


def check_not_smaller(size: int, minimum: int, what: str) -> None:
    """Rule 4.1 and 6: a new size may not be below ``minimum`` GiB."""
    if size < minimum:
        raise exception.InvalidSize(
            reason=f"{size} GiB is smaller than {what} ({minimum} GiB); volumes never shrink"
        )


def check_extend(current: int, new_size: int) -> None:
    """Rule 6: extending must grow the volume."""
    if new_size <= current:
        raise exception.InvalidSize(
            reason=f"the new size {new_size} GiB must be larger than the current {current} GiB"
        )


# -- limits (rules 2.2 and 8) --------------------------------------------------------------
def check_snapshot_limit(volume_id: str, count: int, limit: int) -> None:
    """Rule 2.2: at most ``limit`` snapshots per volume; 0 means no limit."""
    if limit and count >= limit:
        raise exception.SnapshotLimitExceeded(volume=volume_id, count=count, limit=limit)


def check_oversubscription(
    backend: str,
    total_gb: float,
    provisioned_gb: float,
    requested_gb: int,
    ratio: float,
    reserved_percentage: int,
) -> None:
    """Rule 8: provisioned + requested may not exceed the usable capacity times the ratio."""
    if total_gb <= 0:  # capacity is bounded by free space: none is left
        raise exception.NoCapacity(backend=backend, requested=requested_gb)
    usable = total_gb * (100 - reserved_percentage) / 100
    allowed = usable * ratio
    if provisioned_gb + requested_gb > allowed:
        raise exception.OverSubscription(
            requested=requested_gb,
            backend=backend,
            provisioned=int(provisioned_gb + requested_gb),
            allowed=int(allowed),
            total=int(total_gb),
            ratio=ratio,
            reserved=reserved_percentage,
        )
