"""Cinder's own test base, adjusted for pytest, running EVSCinderDriver in a VolumeManager.

Cinder's ``TestCase`` gives each test an in-memory SQLite database with Cinder's schema,
the fake RPC transport and a fake notifier. On top of it, ``EVSManagerTestCase`` builds the
volume manager exactly as ``cinder-volume`` does for one backend of ``enabled_backends``:
the backend section is loaded as raw values (as if read from cinder.conf), the manager is
created with ``host=<host>@<backend>`` and ``service_name=<backend>``, and ``init_host``
runs the driver's ``do_setup`` and ``check_for_setup_error`` against a real local pool in
a temporary directory.
"""

import fixtures
from cinder import context, objects
from cinder.tests.unit import fake_constants
from cinder.tests.unit import test as cinder_test
from cinder.tests.unit import utils as cinder_utils
from cinder.volume import manager as volume_manager
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_utils import timeutils

CONF = cfg.CONF
GiB = 1024**3
DRIVER_PATH = "evs_driver.cinder.EVSCinderDriver"


def describe(data: bytes) -> str:
    """``4096 x b'A'`` for a uniform block, else its length and first bytes."""
    if data and data == data[:1] * len(data):
        return f"{len(data)} x {data[:1]!r}"
    return f"{len(data)} bytes starting {data[:16]!r}"


class CinderTestCase(cinder_test.TestCase):
    """``cinder.tests.unit.test.TestCase`` with the one change pytest needs.

    pytest's unittest runner stores the bound test method on the instance
    (``setattr(testcase, name, method)``) and deletes it when the test ends. Cinder's
    cleanup hook ``_common_cleanup`` deletes every public instance attribute first, so
    pytest's ``delattr`` raised ``AttributeError`` and every test errored after passing
    (seen with pytest 9.2.0 and, identically, 8.3.5; Cinder runs its tests with stestr).
    We keep that one attribute across Cinder's cleanup; nothing else changes. Failures
    still report fine, though pytest prints testtools' details after a "NOTE:
    Incompatible Exception Representation" line.
    """

    def _common_cleanup(self):
        method = self.__dict__.get(self._testMethodName)
        super()._common_cleanup()
        if method is not None:
            self.__dict__[self._testMethodName] = method


class EVSManagerTestCase(CinderTestCase):
    """A real ``VolumeManager`` whose driver is ``EVSCinderDriver`` on a local pool."""

    BACKEND = "evs1"
    POOL_CAPACITY_GB = 10
    CHUNK_SIZE = 65536

    def setUp(self):
        super().setUp()
        # An admin acting in a project, as Cinder's own volume tests use.
        self.context = context.get_admin_context()
        self.context.user_id = fake_constants.USER_ID
        self.context.project_id = fake_constants.PROJECT_ID
        self.pool_path = self.useFixture(fixtures.TempDir()).path + "/pool"
        self.host = f"{CONF.host}@{self.BACKEND}"
        self.backend_options = {
            "volume_driver": DRIVER_PATH,
            "volume_backend_name": "evs_local",
            "volume_backend": "local",
            "local_pool_path": self.pool_path,
            "local_pool_capacity_gb": str(self.POOL_CAPACITY_GB),
            "local_pool_chunk_size": str(self.CHUNK_SIZE),
        }
        self.backend_options.update(self.extra_backend_options())
        # A value of None leaves the option out of the section.
        self.backend_options = {k: v for k, v in self.backend_options.items() if v is not None}
        # As if cinder.conf held: enabled_backends = evs1, [evs1] volume_driver = ...
        self.useFixture(config_fixture.Config(CONF)).load_raw_values(
            group=self.BACKEND, **self.backend_options
        )
        self.flags(enabled_backends=[self.BACKEND])
        self.service = cinder_utils.create_service(
            self.context,
            {
                "host": self.host,
                "binary": "cinder-volume",
                "topic": "cinder-volume",
                "updated_at": timeutils.utcnow(),  # a heartbeat: the scheduler sees it up
            },
        )
        self.manager = volume_manager.VolumeManager(host=self.host, service_name=self.BACKEND)
        self.addCleanup(self.close_driver)
        self.manager.init_host(service_id=self.service.id)

    def extra_backend_options(self) -> dict:
        """Backend section values a test case adds, overrides or (with None) leaves out."""
        return {}

    def close_driver(self):
        """Release the pool (its lock) so the next test can open a fresh one."""
        self.manager.driver.evs.close()

    # -- Cinder objects, made the way Cinder's API would leave them ------------------------
    def pool_host(self) -> str:
        """``host@backend#pool`` for new volumes, with the pool our stats report."""
        stats = self.manager.driver.get_volume_stats(refresh=True)
        return f"{self.host}#{stats['pools'][0]['pool_name']}"

    def new_volume(self, size: int = 1, **kwargs) -> objects.Volume:
        """A volume row in ``creating``, as the API leaves it for the manager."""
        if "host" not in kwargs:
            kwargs["host"] = self.pool_host()
        return cinder_utils.create_volume(
            self.context, status="creating", size=size, volume_type_id=self.vt["id"], **kwargs
        )

    def new_snapshot(self, volume: objects.Volume) -> objects.Snapshot:
        """A snapshot row in ``creating`` of ``volume``."""
        return cinder_utils.create_snapshot(self.context, volume.id, volume_type_id=self.vt["id"])

    def fresh(self, obj):
        """Reload a volume or snapshot from Cinder's database."""
        obj.refresh()
        return obj

    # -- our backend, read and written directly -------------------------------------------
    @property
    def backend(self):
        """The EVS backend under the driver."""
        return self.manager.driver.evs.backend

    def write(self, device_id: str, offset: int, data: bytes) -> None:
        """Write ``data`` into a volume on the backend and flush it."""
        with self.backend.open_device(device_id, writable=True) as dev:
            dev.write(offset, data)
            dev.flush()

    def read(self, device_id: str, offset: int, length: int) -> bytes:
        """Read bytes of a volume or snapshot on the backend."""
        with self.backend.open_device(device_id, writable=False) as dev:
            return dev.read(offset, length)

    def assertData(self, expected: bytes, device_id: str, offset: int) -> None:
        """Fail, with a short description, unless the backend holds ``expected`` at ``offset``."""
        actual = self.read(device_id, offset, len(expected))
        if actual != expected:
            self.fail(
                f"{device_id} at offset {offset}: expected {describe(expected)}, "
                f"found {describe(actual)}"
            )

    def size_on_backend(self, device_id: str) -> int:
        """Size in bytes of a device on the backend."""
        return self.backend.device_usage(device_id).size
