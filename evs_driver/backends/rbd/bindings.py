"""librados and librbd's Python bindings, imported on first use.

They come from Debian's ``python3-rados``/``python3-rbd`` (there are no PyPI wheels) and are
built for the system Python 3.11; ``tools/link-ceph-bindings PYTHON`` makes them importable
from a virtualenv of the same minor version.
"""

import types

from evs_driver import exception

MISSING = (
    "the rbd backend needs Ceph's Python bindings (modules rados and rbd): install Debian's "
    "python3-rados and python3-rbd, and for a virtualenv run tools/link-ceph-bindings "
    "<venv>/bin/python (%s)"
)


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """The ``rados`` and ``rbd`` modules; ``ConfigError`` in one line when they are missing."""
    try:
        import rados
        import rbd
    except ImportError as exc:
        raise exception.ConfigError(reason=MISSING % exc) from None
    return rados, rbd
