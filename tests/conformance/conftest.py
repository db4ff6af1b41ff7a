"""The ``backend`` fixture: every registered backend factory, one parametrized run each.

Adding a backend to the conformance suite is one function decorated with
``@backend_factory("name")`` that returns a set-up ``Backend`` (or calls ``pytest.skip``
where the backend cannot run). The fixture closes the backend after the test.
"""

import uuid
from collections.abc import Callable

import pytest

from evs_driver.backends.base import Backend
from tests.lvm_guest import guestenv
from tests.rbd import cephenv

Factory = Callable[[pytest.FixtureRequest], Backend]
BACKEND_FACTORIES: dict[str, Factory] = {}


def backend_factory(name: str) -> Callable[[Factory], Factory]:
    """Register ``func`` as the factory of backend ``name`` for the conformance suite."""

    def register(func: Factory) -> Factory:
        BACKEND_FACTORIES[name] = func
        return func

    return register


@pytest.fixture(scope="session")
def lvm_conformance_vg():
    """A volume group on the guest's first disk for the whole session."""
    name, disk = "evs-conformance", guestenv.disks()[0]
    guestenv.make_vg(name, disk)
    yield name
    guestenv.remove_vg(name, disk)


@backend_factory("lvm_thin")
def _lvm_thin(request: pytest.FixtureRequest) -> Backend:
    if not guestenv.in_guest():
        pytest.skip(guestenv.SKIP_REASON)
    vg = request.getfixturevalue("lvm_conformance_vg")
    # The first test creates the pool (lvm_create_thin_pool), the others find it.
    backend = guestenv.make_backend(
        vg, "pool", lvm_create_thin_pool=True, lvm_thin_pool_size_percent=50
    )
    backend.setup()
    return backend


@backend_factory("local")
def _local(request: pytest.FixtureRequest) -> Backend:
    from evs_driver.backends.local import LocalBackend

    state = request.getfixturevalue("tmp_path")
    conf = guestenv.backend_conf("local", local_pool_path=str(state / "pool"))
    backend = LocalBackend(conf, "local")
    backend.setup()
    return backend


@backend_factory("rbd")
def _rbd(request: pytest.FixtureRequest) -> Backend:
    cephenv.require_cluster()
    return cephenv.make_backend()


@pytest.fixture(params=sorted(BACKEND_FACTORIES))
def backend(request: pytest.FixtureRequest):
    """A set-up backend of each registered kind."""
    instance = BACKEND_FACTORIES[request.param](request)
    yield instance
    instance.close()


@pytest.fixture
def new_id() -> Callable[[], str]:
    """Make fresh catalog-style ids (UUID strings)."""
    return lambda: str(uuid.uuid4())
