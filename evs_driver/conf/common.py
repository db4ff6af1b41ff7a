"""Options of the ``[DEFAULT]`` group: which backends run, where state lives, product limits."""

import os

from oslo_config import cfg

DEFAULT_STATE_PATH = "~/.local/share/evs"

DEFAULT_OPTS = [
    cfg.ListOpt(
        "enabled_backends",
        default=[],
        help="Names of the backend groups to run, e.g. ``local,lvm``. Each name is a config "
        "group holding that backend's options. Empty: one embedded ``local`` backend under "
        "``state_path``, so a first command works with no config file.",
    ),
    cfg.StrOpt(
        "state_path",
        default=os.environ.get("EVS_STATE_PATH") or os.path.expanduser(DEFAULT_STATE_PATH),
        sample_default="$EVS_STATE_PATH or " + DEFAULT_STATE_PATH,
        help="Directory for the catalog (SQLite), locks and, by default, the local pools.",
    ),
    cfg.IntOpt(
        "max_snapshots_per_volume",
        default=7,
        min=0,
        help="Most user snapshots one volume may have; 0 means no limit. A schedule's "
        "automatic (autobk_snapshot_) snapshots do not count: its retention bounds them.",
    ),
    cfg.IntOpt(
        "lock_timeout",
        default=300,
        min=0,
        help="Seconds an operation waits for another process to release a backend's pool "
        "lock before it fails with a busy error; 0 fails at once.",
    ),
]
