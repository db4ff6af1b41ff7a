"""The throw-away Ceph cluster the rbd tests run against (``tools/ceph-test-cluster run``).

The script exports ``EVS_RBD_CEPH_CONF``, ``EVS_RBD_USER``, ``EVS_RBD_KEYRING``,
``EVS_RBD_POOL`` and ``EVS_RBD_CLUSTER`` (its directory, for the fault tests that stop and
start the OSD). Without them the rbd tests skip, naming the command that runs them.
"""

import os
import subprocess
import uuid

import pytest

from tests.lvm_guest.guestenv import backend_conf

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "ceph-test-cluster")
SKIP_REASON = (
    "no Ceph cluster configured (EVS_RBD_CEPH_CONF unset): run `tox -e rbd`, or any command "
    "under `tools/ceph-test-cluster run -- ...`"
)


def configured() -> bool:
    """True when a test cluster's settings are in the environment."""
    return bool(os.environ.get("EVS_RBD_CEPH_CONF"))


def require_cluster() -> None:
    """Skip the calling test unless a cluster is configured and the bindings load."""
    if not configured():
        pytest.skip(SKIP_REASON)
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Ceph's Python bindings do not load here ({exc}): tools/link-ceph-bindings")


def settings(namespace: str | None = None, **overrides) -> dict:
    """Backend options for the test cluster, in a fresh namespace unless one is given."""
    values = {
        "volume_backend": "rbd",
        "rbd_ceph_conf": os.environ["EVS_RBD_CEPH_CONF"],
        "rbd_user": os.environ.get("EVS_RBD_USER") or None,
        "rbd_keyring": os.environ.get("EVS_RBD_KEYRING") or None,
        "rbd_pool": os.environ.get("EVS_RBD_POOL", "evs"),
        "rbd_namespace": namespace if namespace is not None else new_namespace(),
        "rbd_connect_timeout": 10,
        "rbd_operation_timeout": 10,
    }
    values.update(overrides)
    return values


def new_namespace() -> str:
    """A namespace name no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]


def make_backend(name: str = "rbd", namespace: str | None = None, **overrides):
    """A set-up ``RbdBackend`` on the test cluster."""
    from evs_driver.backends.rbd import RbdBackend

    backend = RbdBackend(backend_conf(name, **settings(namespace, **overrides)), name)
    backend.setup()
    return backend


def cluster_command(verb: str) -> None:
    """Run ``tools/ceph-test-cluster VERB <dir>`` (osd-stop, osd-start)."""
    directory = os.environ.get("EVS_RBD_CLUSTER")
    if not directory:
        pytest.skip("EVS_RBD_CLUSTER unset: the fault tests need the script's own cluster")
    subprocess.run([SCRIPT, verb, directory], check=True, timeout=180)


def config_text(backends: dict[str, dict | None]) -> str:
    """An evs config file enabling ``backends`` (name → rbd settings; None: a local pool)."""
    lines = ["[DEFAULT]", f"enabled_backends = {','.join(backends)}"]
    for name, values in backends.items():
        lines.append(f"[{name}]")
        for key, value in (values or {}).items():
            if value is not None:
                lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"
