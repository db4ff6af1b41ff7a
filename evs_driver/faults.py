"""Fault injection for crash tests: ``EVS_FAULT_INJECT=point=action[,point=action...]``.

Actions: ``kill`` (SIGKILL this process, a real crash), ``sleep:SECONDS`` (hold the
operation open), ``wait:PATH`` (create ``PATH.reached``, then hold the operation until PATH
exists, so a test can race another command against it deterministically), ``raise`` (fail with ``BackendError``).
Test-only by intent; an unset variable costs one dict lookup per point.
"""

import os
import signal
import time

from evs_driver import exception

ENV = "EVS_FAULT_INJECT"
WAIT_LIMIT = 600  # a forgotten release file must not hang a test run forever


def _parse(spec: str) -> dict[str, str]:
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, action = item.partition("=")
        points[point] = action
    return points


def point(name: str) -> None:
    """Run the fault configured for ``name``, if any."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    action = _parse(spec).get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
    elif action.startswith("wait:"):
        path = action.split(":", 1)[1]
        with open(f"{path}.reached", "w"):
            pass
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
    elif action == "raise":
        raise exception.BackendError(backend="fault-injection", reason=f"injected at {name}")
    else:
        raise exception.ConfigError(reason=f"{ENV}: unknown action {action!r} at {name}")
