"""Finding a backend group's driver: an entry point, or a dotted class path as a fallback."""

import importlib

from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches

from evs_driver.conf import BackendConf
from evs_driver.interface import Exporter

DRIVER_NAMESPACE = "evs_driver.volume_drivers"


def load_driver(conf: BackendConf, exporter: Exporter | None):
    """The driver named by ``volume_driver``: an entry point, else a dotted class path."""
    name = conf.volume_driver
    kwargs = {"configuration": conf, "exporter": exporter}
    try:
        return stevedore_driver.DriverManager(
            DRIVER_NAMESPACE, name, invoke_on_load=True, invoke_kwds=kwargs
        ).driver
    except NoMatches:
        pass
    module, _, cls = name.rpartition(".")
    if not module:
        raise conf.option_error(
            "volume_driver",
            f"{name!r} is neither an entry point in {DRIVER_NAMESPACE} nor a dotted class path",
        )
    try:
        driver_cls = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise conf.option_error(
            "volume_driver",
            f"{name!r} is neither an entry point in {DRIVER_NAMESPACE} "
            f"nor an importable class ({exc})",
        ) from exc
    return driver_cls(**kwargs)
