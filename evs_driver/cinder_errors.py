"""Cinder's exceptions for ``EVSError``: how the Cinder adapter reports our failures.

Imported by ``evs_driver.cinder`` only, after it has checked that Cinder imports.
"""

import contextlib
import functools

from cinder import exception as cinder_exception

from evs_driver import exception


@contextlib.contextmanager
def cinder_errors(action: str, resource, fallback_guard: bool = False):
    """Re-raise ``EVSError`` as Cinder's ``VolumeBackendAPIException`` naming the action.

    With ``fallback_guard``, ``NotImplementedError`` and ``AttributeError`` are converted too:
    Cinder's manager reads those two from ``revert_to_snapshot`` as "the driver has no
    revert" and silently runs its generic full copy instead, hiding our failure.
    """
    catch: tuple[type[BaseException], ...] = (exception.EVSError,)
    if fallback_guard:
        catch += (NotImplementedError, AttributeError)
    try:
        yield
    except catch as exc:
        name = getattr(resource, "id", resource)
        raise cinder_exception.VolumeBackendAPIException(
            data=f"evs_driver: {action} failed for {name}: {exc}"
        ) from exc


def translated(action: str):
    """Run a method whose first argument is its volume or snapshot under ``_cinder_errors``."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, resource, *args, **kwargs):
            with cinder_errors(action, resource):
                return method(self, resource, *args, **kwargs)

        return wrapper

    return decorate


@contextlib.contextmanager
def manage_errors(action: str, resource, existing_ref):
    """A bad reference as Cinder's ``ManageExistingInvalidReference``, the rest translated."""
    with cinder_errors(action, resource):
        try:
            yield
        except exception.InvalidReference as exc:
            raise cinder_exception.ManageExistingInvalidReference(
                existing_ref=existing_ref, reason=exc.msg
            ) from exc
