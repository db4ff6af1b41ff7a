"""Options of the ``rbd`` backend: volumes as RBD images in one Ceph pool (and namespace).

Names and meanings follow Cinder's RBD driver where both have the option, so an operator's
``cinder.conf`` habits carry over. Over-subscription and ``reserved_percentage`` are the
options every backend group shares (``evs_driver.conf.backend``).
"""

from oslo_config import cfg

REVERT_METHODS = ("clone", "rollback")

RBD_OPTS = [
    cfg.StrOpt("rbd_pool", default="rbd", help="Ceph pool that holds the volumes."),
    cfg.StrOpt(
        "rbd_namespace",
        default="",
        regex=r"^[A-Za-z0-9_.-]{0,64}$",
        help="RBD namespace inside ``rbd_pool`` for this backend's images (created at start "
        "when missing). Give each volume service sharing a pool its own namespace: a service "
        "sees only the images of its namespace. Empty means the pool's default namespace.",
    ),
    cfg.StrOpt(
        "rbd_ceph_conf",
        default="/etc/ceph/ceph.conf",
        help="Ceph configuration file (monitor addresses, cluster settings).",
    ),
    cfg.StrOpt(
        "rbd_cluster_name",
        default="ceph",
        help="Name of the Ceph cluster, handed to clients in the connection info.",
    ),
    cfg.StrOpt(
        "rbd_user",
        default=None,
        help="Ceph client (cephx user, without ``client.``) to connect as; unset means "
        "librados's default, ``client.admin``.",
    ),
    cfg.StrOpt(
        "rbd_keyring",
        default=None,
        help="Keyring file of ``rbd_user``; unset means librados's search path "
        "(``/etc/ceph/$cluster.$name.keyring``...).",
    ),
    cfg.StrOpt(
        "rbd_secret_uuid",
        default=None,
        help="UUID of the libvirt secret holding ``rbd_user``'s key on the compute hosts, "
        "handed to Nova in the connection info.",
    ),
    cfg.IntOpt(
        "rbd_connect_timeout",
        default=10,
        min=1,
        help="Seconds to wait for the monitors when connecting; past it the backend reports "
        "itself down.",
    ),
    cfg.IntOpt(
        "rbd_operation_timeout",
        default=30,
        min=1,
        help="Seconds a monitor or OSD request may take (``rados_mon_op_timeout``, "
        "``rados_osd_op_timeout``) before the operation fails with a timeout.",
    ),
    cfg.StrOpt(
        "rbd_revert_method",
        default="clone",
        choices=REVERT_METHODS,
        help="How a volume is reverted to a snapshot. ``clone``: a clone v2 child of the "
        "snapshot replaces the volume's image (constant time; reads of data not written since "
        "go through the parent). ``rollback``: ``rbd snap rollback`` rewrites the image in "
        "place (time grows with the image's objects; no parent layer).",
    ),
    cfg.IntOpt(
        "rbd_max_clone_depth",
        default=5,
        min=0,
        help="Longest parent chain a volume may have before the Ceph manager is asked to "
        "flatten it in the background (``rbd task add flatten``); 0 never flattens.",
    ),
]
