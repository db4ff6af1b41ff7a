"""Turn LVM's failures into the project's exceptions, keeping LVM's own message.

LVM reports errors only as text on stderr (exit code 5 for nearly everything), so the
mapping matches the messages of lvm2 2.03; anything unknown becomes a ``BackendError``
that quotes the command and LVM's words. Run with ``LC_ALL=C`` so the text is English.
"""

import re
import shlex

from evs_driver import exception

# (pattern, what) for the ways LVM says a thin pool or its metadata has no room left.
_FULL = (
    (re.compile(r"metadata.*(full|threshold|exhausted|out of space)", re.I), "metadata"),
    (re.compile(r"free space in thin pool \S+ reached threshold", re.I), "data"),
    (re.compile(r"thin pool \S+ (is full|has insufficient free space)", re.I), "data"),
    (re.compile(r"out of data space|no space left on device", re.I), "data"),
    (re.compile(r"insufficient (suitable allocatable extents|free space)", re.I), "volume group"),
)
_NOT_FOUND = (
    (re.compile(r'Failed to find logical volume "([^"]+)"'), "Logical volume"),
    (re.compile(r"Snapshot origin LV (\S+) not found"), "Logical volume"),
    (re.compile(r'Volume group "([^"]+)" not found'), "Volume group"),
)
_EXISTS = re.compile(r'Logical [Vv]olume "([^"]+)" already exists')
_POOL = re.compile(r"thin pool (\S+?)[.,:]?(\s|$)", re.I)
# An LV that was just closed, or is still being scanned, can briefly refuse removal.
_TRANSIENT = re.compile(
    r"device or resource busy|can't remove open logical volume|logical volume \S+ in use"
    r"|unable to deactivate|is used by another device",
    re.I,
)


def lvm_text(stderr: str) -> str:
    """LVM's error lines, without warnings and indentation, joined into one line."""
    lines = [line.strip() for line in stderr.splitlines()]
    kept = [line for line in lines if line and not line.startswith("WARNING")]
    return "; ".join(kept or [line for line in lines if line])


def is_transient(stderr: str) -> bool:
    """True when LVM failed in a way a retry may cure (an LV still busy)."""
    return bool(_TRANSIENT.search(stderr))


def from_lvm(backend: str, cmd: tuple[str, ...], exit_code: int, stderr: str) -> exception.EVSError:
    """The project exception for a failed LVM command, with LVM's message attached."""
    text = lvm_text(stderr)
    for pattern, kind in _NOT_FOUND:
        match = pattern.search(stderr)
        if match:
            name = match.group(1)
            return _attach(
                exception.NotFound(f"{kind} {name} not found (LVM: {text})", kind=kind, name=name),
                text,
            )
    match = _EXISTS.search(stderr)
    if match:
        name = match.group(1)
        err = exception.AlreadyExists(
            f"Logical volume {name} already exists (LVM: {text})", kind="Logical volume", name=name
        )
        return _attach(err, text)
    for pattern, what in _FULL:
        if pattern.search(stderr):
            pool = _POOL.search(stderr)
            detail = f"{what} space exhausted; LVM: {text}"
            return _attach(
                exception.PoolFull(pool=pool.group(1) if pool else backend, detail=detail), text
            )
    reason = f"`{shlex.join(cmd)}` exited with {exit_code}: {text or 'no message'}"
    return _attach(exception.BackendError(backend=backend, reason=reason), text)


def timeout(backend: str, cmd: tuple[str, ...], seconds: int) -> exception.BackendError:
    """The error for an LVM command killed after ``seconds``."""
    reason = f"`{shlex.join(cmd)}` did not finish within {seconds}s (lvm_command_timeout)"
    return exception.BackendError(backend=backend, reason=reason)


def command_missing(backend: str, cmd: tuple[str, ...], exc: OSError) -> exception.BackendError:
    """The error for a command (or root helper) that could not be started."""
    reason = f"cannot run `{shlex.join(cmd)}`: {exc.strerror or exc} (is lvm2 installed?)"
    return exception.BackendError(backend=backend, reason=reason)


def _attach(err: exception.EVSError, text: str) -> exception.EVSError:
    err.lvm_message = text
    return err
