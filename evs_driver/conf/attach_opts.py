"""Options of attaching volumes: the kernel NBD devices and the iSCSI / NVMe-oF targets.

``TARGET_OPTS`` carry the names and meanings of Cinder's own target options, so one backend
section reads the same in ``evs_driver.conf`` and in ``cinder.conf``; under Cinder they are
Cinder's (its target helpers read them) and ours are not registered. ``KERNEL_NBD_OPTS`` are ours.
"""

from oslo_config import cfg

HELPER_PROTOCOLS = {"lioadm": ("iscsi",), "nvmet": ("nvmet_tcp",)}

TARGET_OPTS = [
    cfg.StrOpt(
        "target_helper",
        default="lioadm",
        choices=[
            ("lioadm", "iSCSI targets in the kernel's LIO (rtslib-fb)"),
            ("nvmet", "NVMe over TCP targets in the kernel's nvmet"),
        ],
        help="Target helper that exports attached volumes, as Cinder's option: it sets the "
        "protocol of an attach that names none (``lioadm``: iscsi, ``nvmet``: nvmeof).",
    ),
    cfg.StrOpt(
        "target_protocol",
        default="iscsi",
        choices=[("iscsi", "iSCSI (with lioadm)"), ("nvmet_tcp", "NVMe/TCP (with nvmet)")],
        help="Transport of ``target_helper``, as Cinder's option; it must match the helper.",
    ),
    cfg.StrOpt(
        "target_ip_address",
        default="127.0.0.1",
        help="Address the targets listen on: this host's storage network address (Cinder's "
        "default is ``$my_ip``; ours is loopback, so nothing is reachable until you choose).",
    ),
    cfg.PortOpt(
        "target_port",
        default=3260,
        help="Port of ``target_helper``'s targets (3260 for iSCSI; set 4420 with nvmet). An "
        "attach over the other protocol uses that protocol's standard port.",
    ),
    cfg.StrOpt(
        "target_prefix",
        default="iqn.2010-10.org.openstack:",
        help="Prefix of target names: a volume's iSCSI target is ``<prefix>volume-<id>``; its "
        "NVMe subsystem has the same name with ``nqn.`` in place of ``iqn.``.",
    ),
    cfg.PortOpt(
        "nvmet_port_id", default=1, help="nvmet port id (in configfs) that the NVMe targets share."
    ),
    cfg.IntOpt(
        "nvmet_ns_id", default=10, min=1, help="Namespace id of a volume in its NVMe subsystem."
    ),
]

KERNEL_NBD_OPTS = [
    cfg.IntOpt(
        "nbd_max_devices",
        default=16,
        min=1,
        max=1024,
        help="Kernel NBD devices (``/dev/nbd0`` onwards) that attached ``local`` volumes may "
        "use on this host; attaching one more fails until another is detached.",
    ),
    cfg.IntOpt(
        "nbd_io_timeout",
        default=30,
        min=1,
        help="Seconds a request on a volume's kernel NBD device may wait for the service "
        "before the device drops the connection and retries it on a new one.",
    ),
    cfg.IntOpt(
        "nbd_dead_connection_timeout",
        default=120,
        min=0,
        help="Seconds a volume's kernel NBD device waits for a restarted evs-volume to "
        "reconnect after its connection died; I/O resumes if it does, and fails with EIO "
        "once this has passed. 0 fails I/O at once.",
    ),
]
