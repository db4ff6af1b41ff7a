"""Fixtures of the rbd tests: a backend in a fresh namespace, the cluster's admin CLI."""

import os
import subprocess

import pytest

from tests.rbd import cephenv


@pytest.fixture
def backend():
    """A set-up ``RbdBackend`` in a namespace of its own."""
    cephenv.require_cluster()
    instance = cephenv.make_backend()
    yield instance
    instance.close()


@pytest.fixture
def admin():
    """Run ``ceph``/``rbd`` as client.admin on the test cluster; returns stdout."""
    cephenv.require_cluster()
    directory = os.environ.get("EVS_RBD_CLUSTER")
    if not directory:
        pytest.skip("EVS_RBD_CLUSTER unset: these tests need the script's own cluster (admin key)")

    def run(tool: str, *args: str) -> str:
        result = subprocess.run(
            [tool, "-c", os.path.join(directory, "ceph.conf"), *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"{tool} {' '.join(args)}: {result.stderr}"
        return result.stdout

    return run
