"""Options of the ``lvm_thin`` backend: volumes as thin LVs in an LVM thin pool.

Over-subscription (``max_over_subscription_ratio``) and ``reserved_percentage`` are the
options every backend group shares (``evs_driver.conf.backend``).
"""

from oslo_config import cfg

LVM_OPTS = [
    cfg.StrOpt(
        "lvm_volume_group",
        default="evs-volumes",
        help="Volume group that holds the thin pool. It must exist; evs_driver never creates or "
        "removes volume groups.",
    ),
    cfg.StrOpt(
        "lvm_thin_pool",
        default="evs-pool",
        help="Thin pool (an LV in ``lvm_volume_group``) that holds every volume and snapshot.",
    ),
    cfg.BoolOpt(
        "lvm_create_thin_pool",
        default=False,
        help="Create the thin pool at start when it is missing, sized by "
        "``lvm_thin_pool_size_percent``.",
    ),
    cfg.IntOpt(
        "lvm_thin_pool_size_percent",
        default=95,
        min=1,
        max=100,
        help="Size of a thin pool created at start, as a percentage of the volume group's free "
        "space (LVM adds the pool's metadata LVs on top).",
    ),
    cfg.BoolOpt(
        "lvm_error_when_full",
        default=True,
        help="Make a full thin pool fail writes at once (``--errorwhenfull y``) instead of "
        "queueing them for up to 60 seconds. Applied to the pool at start.",
    ),
    cfg.StrOpt(
        "lvm_root_helper",
        default="",
        help="Command prefix that runs LVM commands as root, e.g. ``sudo`` (with a sudoers "
        "rule limited to the lvm commands); empty when the service already runs as root.",
    ),
    cfg.StrOpt(
        "lvm_volume_prefix",
        default="volume-",
        regex=r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,31}$",
        help="Prefix of the LV name of a volume: the LV is ``<prefix><volume id>``.",
    ),
    cfg.StrOpt(
        "lvm_snapshot_prefix",
        default="_snapshot-",
        regex=r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,31}$",
        help="Prefix of the LV name of a snapshot: the LV is ``<prefix><snapshot id>``. Must "
        "differ from ``lvm_volume_prefix``; LVM reserves names starting with ``snapshot`` or "
        "``pvmove``.",
    ),
    cfg.IntOpt(
        "lvm_command_timeout",
        default=120,
        min=1,
        help="Seconds an LVM command may run before it is killed and the operation fails.",
    ),
    cfg.IntOpt(
        "lvm_command_retries",
        default=3,
        min=0,
        max=20,
        help="Extra attempts for LVM commands that fail with a known transient error "
        "(device busy while removing or deactivating an LV).",
    ),
]
