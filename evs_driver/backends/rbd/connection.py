"""The ``rbd`` connection info of a volume, in the shape Cinder's RBD driver returns.

os-brick's RBD connector and Nova's libvirt driver read ``name`` (``pool/image``), the
monitors' ``hosts`` and ``ports``, ``cluster_name``, ``auth_username`` and the libvirt
``secret_uuid``. With an ``rbd_namespace``, ``name`` is ``pool/namespace/image`` (the form
QEMU and the ``rbd`` CLI take) and ``namespace`` is given too; os-brick 7 cannot split that
name, so namespaced volumes attach through QEMU/librbd or our NBD export instead.
"""

from evs_driver import exception
from evs_driver.backends.rbd import naming


def monitors(cluster) -> tuple[list[str], list[str]]:
    """The monitors' hosts and ports (their legacy address, as Cinder reports them)."""
    hosts, ports = [], []
    for mon in cluster.mon("mon dump")["mons"]:
        addr = mon["addr"].rsplit("/", 1)[0]  # "ip:port/nonce"
        host, port = addr.rsplit(":", 1)
        hosts.append(host.strip("[]"))
        ports.append(port)
    return hosts, ports


def rbd_connection(backend, device_id: str) -> dict:
    """Connection data for volume ``device_id``; {} for a snapshot (served over NBD)."""
    name = naming.volume(device_id)
    image = backend.images.open(name, read_only=True)
    if image is None:
        if backend.images.snapshot(device_id) is not None:
            return {}
        raise exception.NotFound(kind="Volume", name=device_id)
    image.close()
    cluster = backend.cluster
    conf = backend.conf
    hosts, ports = monitors(cluster)
    data = {
        "name": cluster.spec(name),
        "hosts": hosts,
        "ports": ports,
        "cluster_name": conf.rbd_cluster_name,
        "auth_enabled": conf.rbd_user is not None,
        "auth_username": conf.rbd_user,
        "secret_type": "ceph",
        "secret_uuid": conf.rbd_secret_uuid,
        "volume_id": device_id,
        "discard": True,
    }
    if cluster.namespace:
        data["namespace"] = cluster.namespace
    return data
