"""``evs``: the operator's command for volumes, snapshots and pools.

Exit status: 0 on success, 1 with a one-line ``evs: error: ...`` on a failed operation,
2 on a usage error.
"""

import argparse
import logging as std_logging
import os
import sys

from oslo_config import cfg
from oslo_log import log as logging

from evs_driver import conf as evs_conf
from evs_driver import exception
from evs_driver.cmd import output
from evs_driver.cmd.client import make_client, service_running
from evs_driver.service.control import Session
from evs_driver.service.service import VolumeService, run_until_signalled

LOG = logging.getLogger(__name__)
PROJECT = "evs_driver"

VOLUME_COLUMNS = ["id", "name", "size", "status", "backend", "source_snapshot_id", "created_at"]
SNAPSHOT_COLUMNS = ["id", "name", "volume_id", "size", "exclusive_bytes", "status", "created_at"]
POOL_COLUMNS = [
    "backend",
    "volume_backend",
    "location",
    "total_capacity_gb",
    "free_capacity_gb",
    "provisioned_capacity_gb",
    "total_volumes",
    "snapshots",
]


EXPORT_COLUMNS = ["export_name", "name", "uri", "read_only", "connections"]

GLOBAL_DEFAULTS = {"config_file": [], "debug": False, "log_file": None, "format": "table"}


class UsageError(Exception):
    """A malformed command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


class _Subparsers:
    """Sub-commands that all take the common options."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str, common):
        self._action = parser.add_subparsers(dest=dest, required=True, parser_class=_Parser)
        self._common = common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        """A sub-command ``name`` with the common options."""
        return self._action.add_parser(name, parents=[self._common], **kwargs)


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
        "-f",
        "--format",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="Output format (default: table).",
    )
    return common


def _decimal(text: str) -> int | None:
    """A plain decimal integer (no sign, no ``_``, no spaces), or None."""
    return int(text) if text.isascii() and text.isdigit() else None


def _gib(text: str) -> int:
    """A size argument: a whole number of GiB (range checks are the manager's)."""
    value = _decimal(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of GiB (digits only)")
    return value


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _port(text: str) -> int:
    port = _decimal(text)
    if port is None or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return port


def _listen_options(parser: argparse.ArgumentParser) -> None:
    """Where ``serve`` exports: a unix socket, or TCP (localhost unless ``--bind``)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--socket", metavar="PATH", help="Serve on this unix socket (default: the service's own)."
    )
    where.add_argument("--bind", metavar="ADDR", help="Serve on TCP at this address.")
    parser.add_argument(
        "--port", type=_port, help="TCP port (default 10809; 0 picks a free one); implies TCP."
    )


def _image_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-O",
        "--image-format",
        default="raw",
        metavar="FMT",
        help="Image format to write (raw, qcow2, vmdk... any qemu-img writes; default raw).",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    common = _common()
    parser = _Parser(
        prog="evs", description="Volumes and redirect-on-write snapshots.", parents=[common]
    )
    nouns = _Subparsers(parser, "noun", common)

    pool = nouns.add_parser("pool", help="Pools of the enabled backends.")
    pool_cmds = _Subparsers(pool, "verb", common)
    pool_cmds.add_parser("show", help="Capacity and location of each backend.")
    pool_cmds.add_parser("check", help="Check every pool and the catalog; non-zero on problems.")

    vol = nouns.add_parser("volume", help="Volumes.")
    v = _Subparsers(vol, "verb", common)
    p = v.add_parser("create", help="Create a volume (empty, from a snapshot, or a clone).")
    p.add_argument("--size", type=_gib, help="Size in GiB (default: the source's size).")
    p.add_argument("--name")
    p.add_argument("--description")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--snapshot", help="Snapshot (id or name) to create the volume from.")
    src.add_argument("--source-volume", help="Volume (id or name) to clone.")
    p.add_argument(
        "--full-clone",
        action="store_true",
        help="Copy the data instead of sharing blocks with the source.",
    )
    p.add_argument("--backend", help="Backend group (default: the first enabled one).")
    p.add_argument(
        "--property",
        type=_property,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Metadata (repeatable).",
    )
    v.add_parser("list", help="List volumes.")
    v.add_parser("show", help="Show a volume.").add_argument("volume")
    p = v.add_parser("delete", help="Delete a volume.")
    p.add_argument("volume")
    p.add_argument("--cascade", action="store_true", help="Delete its snapshots too.")
    p = v.add_parser("extend", help="Grow a volume.")
    p.add_argument("volume")
    p.add_argument("--size", type=_gib, required=True, help="New size in GiB.")
    p = v.add_parser("revert", help="Revert a volume to any of its snapshots.")
    p.add_argument("volume")
    p.add_argument("--snapshot", required=True)
    p = v.add_parser(
        "import", help="Write an image file (raw, or any format qemu-img reads) onto a volume."
    )
    p.add_argument("volume")
    p.add_argument("file")
    p = v.add_parser("export", help="Write a volume to an image file.")
    p.add_argument("volume")
    p.add_argument("file")
    _image_format(p)
    p = v.add_parser(
        "serve", help="Attach a volume and serve it over NBD (starts evs-volume if none runs)."
    )
    p.add_argument("volume")
    _listen_options(p)
    p.add_argument("--read-only", action="store_true", help="Refuse writes.")
    v.add_parser("unserve", help="Stop serving a volume and detach it.").add_argument("volume")
    p = v.add_parser("reset-state", help="Force a volume's status (operators only).")
    p.add_argument("volume")
    p.add_argument("--state", required=True)

    snap = nouns.add_parser("snapshot", help="Snapshots.")
    s = _Subparsers(snap, "verb", common)
    p = s.add_parser("create", help="Snapshot a volume.")
    p.add_argument("volume")
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument(
        "--force",
        action="store_true",
        help="Accepted for Cinder compatibility; in-use volumes need no force.",
    )
    p.add_argument(
        "--property",
        type=_property,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Metadata (repeatable).",
    )
    s.add_parser("list", help="List snapshots.").add_argument("--volume")
    s.add_parser("show", help="Show a snapshot.").add_argument("snapshot")
    s.add_parser("delete", help="Delete a snapshot.").add_argument("snapshot")
    p = s.add_parser("export", help="Write a snapshot to an image file.")
    p.add_argument("snapshot")
    p.add_argument("file")
    _image_format(p)
    p = s.add_parser("serve", help="Serve a snapshot read-only over NBD.")
    p.add_argument("snapshot")
    _listen_options(p)
    s.add_parser("unserve", help="Stop serving a snapshot.").add_argument("snapshot")
    p = s.add_parser("reset-state", help="Force a snapshot's status (operators only).")
    p.add_argument("snapshot")
    p.add_argument("--state", required=True)

    exports = nouns.add_parser("export", help="NBD exports of the running evs-volume.")
    _Subparsers(exports, "verb", common).add_parser("list", help="List the NBD exports.")

    p = nouns.add_parser(
        "demo",
        aliases=["walkthrough"],
        help="Walk through the EVS snapshot example, verifying data.",
    )
    p.add_argument("--state-path", help="Directory to run in (default: a temporary one).")
    return parser


def load_config(args: argparse.Namespace) -> cfg.ConfigOpts:
    """Parse the config files named on the command line (or the default places)."""
    conf = cfg.ConfigOpts()
    evs_conf.register_opts(conf)
    logging.register_options(conf)
    argv = []
    for path in args.config_file:
        argv += ["--config-file", path]
    if args.debug:
        argv.append("--debug")
    if args.log_file:
        argv += ["--log-file", args.log_file]
    defaults = None if args.config_file else cfg.find_config_files(project=PROJECT, prog="evs")
    try:
        conf(argv, project=PROJECT, prog="evs", default_config_files=defaults)
    except cfg.ConfigFilesNotFoundError as exc:
        files = ", ".join(exc.config_files)
        raise exception.ConfigError(reason=f"config file not found: {files}") from None
    except cfg.ConfigFileParseError as exc:
        raise exception.ConfigError(reason=f"{exc.config_file}: cannot parse: {exc.msg}") from None
    except cfg.Error as exc:
        raise exception.ConfigError(reason=str(exc)) from None
    return conf


def setup_logging(conf: cfg.ConfigOpts) -> None:
    """oslo.log to stderr (warnings only) or to ``--log-file``; ``--debug`` shows everything."""
    conf.set_override("use_stderr", not conf.log_file)
    logging.setup(conf, "evs")
    if not conf.debug:
        # The error line says what failed; stevedore's own warning would repeat it.
        std_logging.getLogger("stevedore").setLevel(std_logging.ERROR)
        if not conf.log_file:
            std_logging.getLogger().setLevel(std_logging.WARNING)


def run(args: argparse.Namespace, client, out) -> int:
    """Dispatch one parsed command; returns the exit status."""
    fmt = args.format
    noun, verb = args.noun, args.verb
    if noun == "pool" and verb == "show":
        rows = client.pool_show()
        text = (
            output.show(rows[0], fmt)
            if len(rows) == 1 and fmt == "table"
            else (output.listing(rows, POOL_COLUMNS, fmt))
        )
        print(text, file=out)
        return 0
    if noun == "pool":
        problems = client.pool_check()
        count = sum(len(p) for p in problems.values())
        if fmt == "json":
            print(output.show({"clean": not count, "problems": problems}, fmt), file=out)
        else:
            for backend, found in problems.items():
                print(
                    f"{backend}: {'clean' if not found else f'{len(found)} problem(s)'}", file=out
                )
                for problem in found:
                    print(f"  - {problem}", file=out)
        if count:
            raise exception.InvalidOperation(reason=f"pool check found {count} problem(s)")
        return 0
    result = _dispatch(args, client)
    if result is None:
        return 0
    if isinstance(result, list):
        columns = {"volume": VOLUME_COLUMNS, "snapshot": SNAPSHOT_COLUMNS}.get(noun, EXPORT_COLUMNS)
        print(output.listing(result, columns, fmt), file=out)
    else:
        print(output.show(result, fmt), file=out)
    return 0


def _dispatch(args: argparse.Namespace, client):
    noun, verb = args.noun, args.verb
    if noun == "volume":
        if verb == "create":
            return client.volume_create(
                size=args.size,
                name=args.name,
                description=args.description,
                snapshot=args.snapshot,
                source_volume=args.source_volume,
                full_clone=args.full_clone,
                backend=args.backend,
                metadata=dict(args.property),
                progress=output.ProgressBar("copying") if args.full_clone else None,
            )
        if verb == "list":
            return client.volume_list()
        if verb == "show":
            return client.volume_show(args.volume)
        if verb == "delete":
            return client.volume_delete(args.volume, cascade=args.cascade)
        if verb == "extend":
            return client.volume_extend(args.volume, args.size)
        if verb == "revert":
            return client.volume_revert(args.volume, args.snapshot)
        if verb == "import":
            return client.volume_import(args.volume, args.file, output.ProgressBar("importing"))
        if verb == "export":
            return client.volume_export(
                args.volume, args.file, output.ProgressBar("exporting"), args.image_format
            )
        if verb == "serve":
            return client.volume_serve(args.volume, listen=_listen(args), read_only=args.read_only)
        if verb == "unserve":
            return client.volume_unserve(args.volume)
        return client.volume_reset_state(args.volume, args.state)
    if noun == "export":
        return client.export_list()
    if verb == "create":
        return client.snapshot_create(
            args.volume,
            name=args.name,
            description=args.description,
            force=args.force,
            metadata=dict(args.property),
        )
    if verb == "list":
        return client.snapshot_list(args.volume)
    if verb == "show":
        return client.snapshot_show(args.snapshot)
    if verb == "delete":
        return client.snapshot_delete(args.snapshot)
    if verb == "export":
        return client.snapshot_export(
            args.snapshot, args.file, output.ProgressBar("exporting"), args.image_format
        )
    if verb == "serve":
        return client.snapshot_serve(args.snapshot, listen=_listen(args))
    if verb == "unserve":
        return client.snapshot_unserve(args.snapshot)
    return client.snapshot_reset_state(args.snapshot, args.state)


def _listen(args: argparse.Namespace) -> dict | None:
    """The ``listen`` request argument of ``serve`` (None: the service's own socket)."""
    if args.socket:
        if args.port is not None:
            raise exception.InvalidInput(reason="give --socket or a TCP --bind/--port, not both")
        return {"socket": os.path.abspath(args.socket)}
    if args.bind or args.port is not None:
        return {"host": args.bind or "127.0.0.1", "port": 10809 if args.port is None else args.port}
    return None


def _serve_in_foreground(args: argparse.Namespace, conf: cfg.ConfigOpts) -> int:
    """``serve`` with no service running: be the service until SIGTERM or Ctrl-C."""
    service = VolumeService(conf)

    def ready() -> None:
        session = Session(os.getpid())
        if args.noun == "volume":
            result = service.volume_serve(
                args.volume, listen=_listen(args), read_only=args.read_only, session=session
            )
        else:
            result = service.snapshot_serve(args.snapshot, listen=_listen(args), session=session)
        print(output.show(result, args.format), file=sys.stdout, flush=True)
        print("evs: serving in the foreground (evs-volume); stop with Ctrl-C", file=sys.stderr)

    run_until_signalled(service, ready)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evs`` console script."""
    try:
        args = build_parser().parse_args(argv)
        # Defaults are filled here: the common options' actions are shared by every parser.
        for name, value in GLOBAL_DEFAULTS.items():
            if not hasattr(args, name):
                setattr(args, name, value)
    except UsageError as exc:
        print(f"{exc} (see evs --help)", file=sys.stderr)
        return 2
    client = None
    try:
        if args.noun in ("demo", "walkthrough"):
            from evs_driver.cmd import demo

            return demo.run(args.state_path, sys.stdout)
        conf = load_config(args)
        setup_logging(conf)
        if args.verb == "serve" and not service_running(conf):
            return _serve_in_foreground(args, conf)
        client = make_client(conf)
        return run(args, client, sys.stdout)
    except exception.EVSError as exc:
        print(f"evs: error: {exc.msg}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (e.g. ``| head``) went away: nothing left to tell it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("evs: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an OS failure: still one line, the trace in the log
        LOG.debug("Unexpected failure", exc_info=True)
        print(
            f"evs: error: unexpected {type(exc).__name__}: {exc} (details with --debug)",
            file=sys.stderr,
        )
        return 1
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
