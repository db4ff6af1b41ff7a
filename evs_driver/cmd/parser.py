"""The ``evs`` command line, built from the operations table (nothing listed twice)."""

import argparse

from evs_driver.operations import OPERATIONS, Operation

NOUN_HELP = {
    "pool": "Pools of the enabled backends.",
    "volume": "Volumes.",
    "snapshot": "Snapshots.",
    "schedule": "Snapshot schedules with retention (run by evs-volume).",
    "group": "Consistency groups: volumes snapshotted at one instant.",
    "export": "NBD exports of the running evs-volume.",
}
VERB_ORDER = (
    "create", "list", "show", "update", "delete", "extend", "revert", "snapshot",
    "snapshot-list", "snapshot-delete", "diff", "import", "import-diff", "export", "attach",
    "detach", "serve", "unserve", "check", "manageable", "manage", "unmanage", "reset-state",
)  # fmt: skip
GLOBAL_DEFAULTS = {"config_file": [], "debug": False, "log_file": None, "format": "table"}


def _verb_rank(op) -> int:
    # Verbs not in the list come last, in the order they were declared (sorted is stable).
    return VERB_ORDER.index(op.verb) if op.verb in VERB_ORDER else len(VERB_ORDER)


class UsageError(Exception):
    """A malformed command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (``evs volume list -f json``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config-file",
        action="append",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="Config file (repeatable); default: the usual oslo.config places, else one "
        "embedded local backend under $EVS_STATE_PATH or ~/.local/share/evs.",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="Log debug messages."
    )
    common.add_argument(
        "--log-file", default=argparse.SUPPRESS, metavar="PATH", help="Log to this file."
    )
    common.add_argument(
        "--progress",
        dest="show_progress",
        action="store_true",
        default=argparse.SUPPRESS,
        help="Draw the progress bar of long copies on stderr even when it is not a terminal.",
    )
    common.add_argument(
        "-f",
        "--format",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="Output format (default: table).",
    )
    return common


def _add_arguments(parser: argparse.ArgumentParser, op: Operation) -> None:
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for arg in op.args:
        target = parser
        if arg.group:
            if arg.group not in groups:
                groups[arg.group] = parser.add_mutually_exclusive_group()
            target = groups[arg.group]
        settings = {"help": arg.help}
        if not arg.positional:
            settings["dest"] = arg.dest
            settings["default"] = arg.default
            if arg.required:
                settings["required"] = True
        for key in ("type", "action", "metavar", "choices"):
            if getattr(arg, key) is not None:
                settings[key] = getattr(arg, key)
        target.add_argument(*(arg.flags or (arg.dest,)), **settings)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line: one sub-command per operation, grouped by noun.

    With ``argv``, only the nouns and verbs it names get their sub-commands and arguments:
    argparse takes longer to build all of them than the rest of ``evs --help`` takes.
    """
    named = None if argv is None else set(argv)
    common = _common()
    parser = _Parser(
        prog="evs", description="Volumes and redirect-on-write snapshots.", parents=[common]
    )
    nouns = parser.add_subparsers(dest="noun", required=True, parser_class=_Parser)
    by_noun: dict[str, list[Operation]] = {}
    for op in OPERATIONS.values():
        by_noun.setdefault(op.noun, []).append(op)
    for noun in sorted(by_noun, key=lambda n: list(NOUN_HELP).index(n)):
        noun_parser = nouns.add_parser(noun, help=NOUN_HELP[noun], parents=[common])
        if named is not None and noun not in named:
            continue
        verbs = noun_parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
        for op in sorted(by_noun[noun], key=_verb_rank):
            sub = verbs.add_parser(op.verb, help=op.help, parents=[common])
            sub.set_defaults(operation=op)
            if named is None or op.verb in named:
                _add_arguments(sub, op)
    demo = nouns.add_parser(
        "demo",
        aliases=["walkthrough"],
        help="Walk through the EVS snapshot example, verifying data.",
        parents=[common],
    )
    demo.add_argument("--state-path", help="Directory to run in (default: a temporary one).")
    demo.set_defaults(operation=None)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; ``UsageError`` when it is malformed."""
    args = build_parser(argv).parse_args(argv)
    # Defaults are filled here: the common options' actions are shared by every parser.
    for name, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def keywords(args: argparse.Namespace, op: Operation) -> dict:
    """The operation's keyword arguments from a parsed command line."""
    values = {}
    for arg in op.args:
        value = getattr(args, arg.dest)
        values[arg.dest] = arg.convert(value) if arg.convert and value is not None else value
    return op.prepare(values) if op.prepare else values
