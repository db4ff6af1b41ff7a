"""Tests that run evs_driver inside OpenStack Cinder; they run in ``tox -e cinder``.

Importing ``cinder.tests.unit`` first does what Cinder's own test runs do before anything
else: eventlet's monkey patching and the registration of Cinder's versioned objects, which
modules such as ``cinder.scheduler.host_manager`` need at import time. Without Cinder, each
test module skips itself with the reason.
"""

import importlib.util

if importlib.util.find_spec("cinder") is not None:
    import cinder.tests.unit  # noqa: F401
