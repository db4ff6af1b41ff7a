"""Our statistics through Cinder's real scheduler path: HostManager, then CapacityFilter.

The volume manager collects the statistics (adding its own ``allocated_capacity_gb``) and
the scheduler's ``HostManager`` turns them into pool states exactly as it does for an RPC
capability report; the filter then decides as it would for a create request.
"""

import ddt
import pytest

pytest.importorskip("cinder", reason="OpenStack Cinder is not installed: run `tox -e cinder`")
pytest.importorskip("evs_driver.driver", reason="EVSDriver (evs_driver/driver.py) is missing")

import evs_cinder_harness as harness  # noqa: E402
from cinder import exception as cinder_exception  # noqa: E402
from cinder.scheduler import host_manager  # noqa: E402
from oslo_utils import timeutils  # noqa: E402

GiB = harness.GiB
THIN = {}
THICK = {"extra_specs": {"provisioning:type": "thick"}}


@ddt.ddt
class TestSchedulerCapacity(harness.EVSManagerTestCase):
    POOL_CAPACITY_GB = 10

    def scheduler_pools(self) -> list:
        """Pool states the scheduler builds from the capabilities the manager reports."""
        self.manager._report_driver_status(self.context)
        hosts = host_manager.HostManager()
        hosts.update_service_capabilities(
            "volume", self.host, self.manager.last_capabilities, None, timeutils.utcnow()
        )
        return list(hosts.get_all_backend_states(self.context)), hosts

    def passes(self, size_gb: int, volume_type: dict) -> bool:
        pools, hosts = self.scheduler_pools()
        properties = {
            "size": size_gb,
            "request_spec": {"volume_id": "new"},
            "volume_type": volume_type,
        }
        passed = hosts.get_filtered_backends(
            pools, properties, filter_class_names=["CapacityFilter"]
        )
        return bool(passed)

    def test_pool_reports_every_key_the_scheduler_needs(self):
        self.manager._report_driver_status(self.context)
        caps = self.manager.last_capabilities
        (pool,) = caps["pools"]
        self.assertTrue(set(pool) >= host_manager.HostManager.REQUIRED_KEYS)
        self.assertEqual("evs_local", caps["volume_backend_name"])
        self.assertEqual(
            (10.0, 20.0, 0, True, False),
            (
                pool["total_capacity_gb"],
                pool["max_over_subscription_ratio"],
                pool["reserved_percentage"],
                pool["thin_provisioning_support"],
                pool["thick_provisioning_support"],
            ),
        )
        pools, _ = self.scheduler_pools()
        self.assertEqual([f"{self.host}#evs_local"], [p.backend_id for p in pools])

    @ddt.data(
        # ratio, reserved %, already provisioned GiB, request GiB, volume type, passes
        ("20.0", 0, 0, 1, THIN, True),
        ("20.0", 0, 0, 190, THIN, True),
        ("20.0", 0, 0, 210, THIN, False),
        ("20.0", 0, 100, 90, THIN, True),
        ("20.0", 0, 100, 110, THIN, False),
        ("1.0", 0, 0, 9, THIN, True),
        ("1.0", 0, 0, 11, THIN, False),
        ("1.0", 50, 0, 4, THIN, True),
        ("1.0", 50, 0, 6, THIN, False),
        ("auto", 0, 0, 1, THIN, True),
        ("20.0", 0, 0, 9, THICK, True),
        ("20.0", 0, 0, 11, THICK, False),
    )
    @ddt.unpack
    def test_capacity_filter(self, ratio, reserved, provisioned, request, vtype, expected):
        self.flags(max_over_subscription_ratio=ratio, group=self.BACKEND)
        self.flags(reserved_percentage=reserved, group=self.BACKEND)
        if provisioned:
            # Thin: provisioned on the backend, no data written.
            self.backend.create_volume("provisioned", provisioned * GiB)
        self.assertEqual(expected, self.passes(request, vtype))

    def test_auto_ratio_is_passed_to_the_scheduler_as_auto(self):
        self.flags(max_over_subscription_ratio="auto", group=self.BACKEND)
        stats = self.manager.driver.get_volume_stats(refresh=True)
        self.assertEqual("auto", stats["pools"][0]["max_over_subscription_ratio"])

    def test_a_ratio_below_one_is_refused_at_setup_and_in_reports(self):
        # Cinder's option regex allows "0.5"; Cinder's helper, which we use, refuses it.
        self.flags(max_over_subscription_ratio="0.5", group=self.BACKEND)
        driver = self.manager.driver
        error = self.assertRaises(
            cinder_exception.InvalidParameterValue, driver.check_for_setup_error
        )
        self.assertIn("max_over_subscription_ratio must be greater than 1", str(error))
        self.assertRaises(cinder_exception.InvalidParameterValue, driver.get_volume_stats, True)
