"""``evs-volume``: the long-running volume service (like cinder-volume).

It runs the manager with every enabled backend, holds their pools open, serves the NBD
exports and answers ``evs`` on ``$state_path/evs-volume.sock`` (mode 0600). SIGTERM or
SIGINT stops it cleanly: exports closed, volumes detached, pools committed and closed.
"""

import argparse
import sys

from oslo_log import log as logging

from evs_driver import exception
from evs_driver.cmd import evs
from evs_driver.service.service import VolumeService, run_until_signalled

LOG = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``evs-volume`` console script."""
    parser = argparse.ArgumentParser(
        prog="evs-volume", description="The evs volume service: pools, NBD exports, control socket."
    )
    parser.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="PATH",
        help="Config file (repeatable); default: the usual oslo.config places, as for evs.",
    )
    parser.add_argument("--debug", action="store_true", help="Log debug messages.")
    parser.add_argument("--log-file", metavar="PATH", help="Log to this file, not stderr.")
    args = parser.parse_args(argv)
    try:
        conf = evs.load_config(args)
        conf.set_override("use_stderr", not conf.log_file)
        logging.setup(conf, "evs-volume")
        service = VolumeService(conf)
        run_until_signalled(
            service, lambda: LOG.info("evs-volume ready on %s", service.control.path)
        )
    except exception.EVSError as exc:
        print(f"evs-volume: error: {exc.msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
