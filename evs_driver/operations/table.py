"""The table of what a user can ask: each operation declared once, with its arguments.

The ``evs`` command builds its parser from this table, the embedded client and the
``evs-volume`` service run the operations from it, and the control protocol accepts
exactly its names. An operation has:
- ``run(ctx, ...)``: the work, where the manager is (the ``evs`` process itself when no
  service runs, else the service); it returns plain data (dicts, lists);
- optionally ``client(client, ...)``: what the ``evs`` process does around it (a qemu-img
  copy against an export that ``run`` of another operation made), calling ``client.call``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

RECORD, LISTING, DETAILS, NOTHING, CHECK = "record", "listing", "details", "nothing", "check"
# DETAILS: a listing whose single row is shown in full (``pool show`` with one backend).


# NamedTuples, not dataclasses: ``evs`` builds its parser from this table, and importing
# dataclasses (inspect, ast, dis...) costs a client command more than the table itself.
class Arg(NamedTuple):
    """One argument: its command-line flags (none for a positional) and parser settings.

    ``dest`` is the keyword ``run`` takes; ``convert`` turns the parsed value into it.
    """

    dest: str
    flags: tuple[str, ...] = ()
    help: str | None = None
    type: Callable[[str], Any] | None = None
    required: bool = False
    default: Any = None
    action: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    group: str | None = None  # arguments sharing a group are mutually exclusive
    convert: Callable[[Any], Any] | None = None
    cli_only: bool = False  # parsed, then folded into another argument by ``prepare``

    @property
    def positional(self) -> bool:
        """True when the argument has no flag."""
        return not self.flags


class Operation(NamedTuple):
    """One thing a user can ask, declared once."""

    name: str  # the protocol method, e.g. "volume_create"
    noun: str
    verb: str
    help: str
    run: Callable[..., Any]
    args: tuple[Arg, ...] = ()
    result: str = RECORD
    columns: tuple[str, ...] = ()
    client: Callable[..., Any] | None = None
    prepare: Callable[[dict], dict] | None = None  # command-line values -> run's keywords
    progress: str | None = None  # label of the progress bar the command may draw
    aliases: tuple[str, ...] = ()


OPERATIONS: dict[str, Operation] = {}


def operation(noun: str, verb: str, help: str, **fields) -> Callable:
    """Declare the decorated function as the ``run`` of operation ``<noun>_<verb>``."""

    def register(run: Callable) -> Callable:
        name = f"{noun}_{verb.replace('-', '_')}"
        if name in OPERATIONS:
            raise ValueError(f"operation {name} is declared twice")
        OPERATIONS[name] = Operation(name=name, noun=noun, verb=verb, help=help, run=run, **fields)
        return run

    return register


def with_client(name: str) -> Callable:
    """Declare the decorated function as the ``client`` part of operation ``name``."""

    def register(client: Callable) -> Callable:
        OPERATIONS[name] = OPERATIONS[name]._replace(client=client)
        return client

    return register
