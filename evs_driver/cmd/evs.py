"""``evs``: the operator's command for volumes, snapshots and pools.

Exit status: 0 on success, 1 with a one-line ``evs: error: ...`` on a failed operation,
2 on a usage error. ``evs`` alone prints the help.

What a command needs is imported when it needs it: the parser comes from the operations
table alone, so ``evs --help`` and a usage error load neither oslo.config nor oslo.log,
the manager or the NBD server; a command for a running ``evs-volume`` whose socket is
known (``socket_cache``) loads only the protocol, the service client and the output.
"""

import argparse
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from evs_driver import exception
from evs_driver.cmd import parser
from evs_driver.operations import table

if TYPE_CHECKING:
    from oslo_config import cfg

LOG = logging.getLogger(__name__)
PROJECT = "evs_driver"
PLAIN_FORMAT = "evs: %(message)s"  # the log format without --debug or --log-file


def load_config(args: argparse.Namespace) -> "cfg.ConfigOpts":
    """Parse the config files named on the command line (or the default places)."""
    from oslo_config import cfg
    from oslo_log import log as oslo_logging

    from evs_driver import conf as evs_conf

    conf = cfg.ConfigOpts()
    evs_conf.register_opts(conf)
    oslo_logging.register_options(conf)
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


def setup_logging(conf: "cfg.ConfigOpts") -> None:
    """oslo.log to stderr (warnings only, as ``evs: ...`` lines) or to ``--log-file``;
    ``--debug`` shows everything in oslo.log's own format."""
    from oslo_log import log as oslo_logging

    conf.set_override("use_stderr", not conf.log_file)
    if not conf.debug and not conf.log_file:
        for option in ("logging_default_format_string", "logging_context_format_string"):
            conf.set_override(option, PLAIN_FORMAT)
    oslo_logging.setup(conf, "evs")
    if not conf.debug:
        # The error line says what failed; stevedore's own warning would repeat it.
        logging.getLogger("stevedore").setLevel(logging.ERROR)
        if not conf.log_file:
            logging.getLogger().setLevel(logging.WARNING)


def run(args: argparse.Namespace, client, out) -> int:
    """Run one parsed command and print its result; returns the exit status."""
    from evs_driver.cmd import output
    from evs_driver.cmd.service_client import perform

    op = args.operation
    if op.progress:
        client.progress = output.ProgressBar(
            op.progress, always=getattr(args, "show_progress", False)
        )
    result = perform(client, op, (), parser.keywords(args, op))
    if op.result == table.CHECK:
        return _print_check(result, args.format, out)
    if op.result == table.DETAILS and len(result) == 1 and args.format == "table":
        print(output.show(result[0], args.format), file=out)
    elif op.result in (table.LISTING, table.DETAILS):
        print(output.listing(result, list(op.columns), args.format), file=out)
    elif result is not None:
        print(output.show(result, args.format), file=out)
    return 0


def _print_check(problems: dict[str, list[str]], fmt: str, out) -> int:
    from evs_driver.cmd import output

    count = sum(len(p) for p in problems.values())
    if fmt == "json":
        print(output.show({"clean": not count, "problems": problems}, fmt), file=out)
    else:
        for backend, found in problems.items():
            print(f"{backend}: {'clean' if not found else f'{len(found)} problem(s)'}", file=out)
            for problem in found:
                print(f"  - {output.escape(problem)}", file=out)
    if count:
        raise exception.InvalidOperation(reason=f"pool check found {count} problem(s)")
    return 0


def _serve_in_foreground(args: argparse.Namespace, conf: "cfg.ConfigOpts") -> int:
    """``serve`` with no service running: be the service until SIGTERM or Ctrl-C."""
    from evs_driver.cmd import output
    from evs_driver.service.service import VolumeService, run_until_signalled

    service = VolumeService(conf)
    op = args.operation

    def ready() -> None:
        result = service.request(op.name, **parser.keywords(args, op))
        print(output.show(result, args.format), file=sys.stdout, flush=True)
        print("evs: serving in the foreground (evs-volume); stop with Ctrl-C", file=sys.stderr)

    run_until_signalled(service, ready)
    return 0


def _known_state_path(args: argparse.Namespace) -> str | None:
    """The state path this configuration resolved to before, when that still holds and the
    command logs as by default (else the configuration is loaded, with oslo.config)."""
    if args.debug or args.log_file:
        return None
    from evs_driver.cmd import socket_cache

    return socket_cache.lookup(args.config_file)


def _running_service(state_path: str):
    """A client of the service answering on ``state_path``, logging as ``setup_logging``
    does by default; None when no service answers there."""
    from evs_driver.cmd.service_client import ServiceClient
    from evs_driver.service import protocol

    client = ServiceClient.connect(os.path.join(state_path, protocol.SOCKET_NAME))
    if client is not None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    return client


def _remember_state_path(
    args: argparse.Namespace, conf: "cfg.ConfigOpts", loaded_from: int
) -> None:
    """Remember where ``conf`` (loaded from ``loaded_from`` on) puts the state path."""
    from evs_driver.cmd import socket_cache
    from evs_driver.service import protocol

    socket_cache.remember(args.config_file, conf, protocol.state_path(conf), loaded_from)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evs`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.build_parser([]).print_help()
        return 0
    try:
        args = parser.parse(argv)
    except parser.UsageError as exc:
        print(f"{exc} (see evs --help)", file=sys.stderr)
        return 2
    client = None
    try:
        if args.operation is None:
            from evs_driver.cmd import demo

            return demo.run(args.state_path, sys.stdout)
        known = _known_state_path(args)
        client = _running_service(known) if known else None
        if client is None:
            from evs_driver.cmd.client import make_client, service_running

            loaded_from = time.time_ns()
            conf = load_config(args)
            if known is None:
                _remember_state_path(args, conf, loaded_from)
            setup_logging(conf)
            if args.verb == "serve" and not service_running(conf):
                return _serve_in_foreground(args, conf)
            client = make_client(conf)
        # A stream on standard output (FILE -) leaves only stderr for the summary.
        streaming = getattr(args, "file", None) == "-" and args.verb == "export"
        return run(args, client, sys.stderr if streaming else sys.stdout)
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
