"""Every option evs_driver registers, listed for ``oslo-config-generator``."""

import importlib

from evs_driver.conf.attach_opts import KERNEL_NBD_OPTS, TARGET_OPTS
from evs_driver.conf.backend import BACKEND_DEFAULTS_GROUP, BACKEND_OPTS
from evs_driver.conf.common import DEFAULT_OPTS
from evs_driver.conf.local import LOCAL_OPTS
from evs_driver.conf.nbd import NBD_GROUP, NBD_OPTS

# Backends whose option modules may be absent from a trimmed install: (module, list name).
_OPTIONAL_BACKEND_OPTS = (("lvm_opts", "LVM_OPTS"), ("rbd_opts", "RBD_OPTS"))


def backend_opts() -> list:
    """Options a backend group may set: shared, local pool, and LVM and RBD ones when present."""
    opts = BACKEND_OPTS + LOCAL_OPTS + KERNEL_NBD_OPTS
    for module_name, list_name in _OPTIONAL_BACKEND_OPTS:
        name = f"evs_driver.conf.{module_name}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # only the module's own absence is tolerated
                raise
        else:
            opts = opts + list(getattr(module, list_name))
    return opts


def standalone_backend_opts() -> list:
    """A backend group's options outside Cinder: also the target options Cinder has its own of."""
    return backend_opts() + TARGET_OPTS


def list_opts() -> list[tuple[str, list]]:
    """(group, options) pairs; ``[backend_defaults]`` documents every backend group's options."""
    return [
        ("DEFAULT", list(DEFAULT_OPTS)),
        (BACKEND_DEFAULTS_GROUP, standalone_backend_opts()),
        (NBD_GROUP, list(NBD_OPTS)),
    ]
