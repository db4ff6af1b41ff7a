"""Options every backend group takes (``[backend_defaults]`` gives their shared values)."""

from oslo_config import cfg

BACKEND_DEFAULTS_GROUP = "backend_defaults"

BACKEND_OPTS = [
    cfg.StrOpt(
        "volume_driver",
        default="evs",
        help="Driver of this backend: an entry point name in the ``evs_driver.volume_drivers`` "
        "namespace, or a dotted class path.",
    ),
    cfg.StrOpt(
        "volume_backend",
        default="local",
        help="Storage under the driver: an entry point name in the ``evs_driver.backends`` "
        "namespace (``local`` is the built-in redirect-on-write pool, ``lvm_thin`` an LVM "
        "thin pool).",
    ),
    cfg.StrOpt(
        "volume_backend_name",
        help="Name reported to the scheduler as ``volume_backend_name``; defaults to the "
        "backend's group name.",
    ),
    cfg.FloatOpt(
        "max_over_subscription_ratio",
        default=20.0,
        min=1.0,
        help="How far the provisioned capacity may exceed the usable capacity of a thin pool "
        "(1.0 means no over-subscription). Creating a volume beyond it fails.",
    ),
    cfg.IntOpt(
        "reserved_percentage",
        default=0,
        min=0,
        max=100,
        help="Percentage of the pool's capacity kept back from provisioning.",
    ),
]
