"""What an operation runs with: the manager, the caller's session and its progress report."""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line's parser is built without the driver's modules
    from evs_driver.interface import Progress

LOG = logging.getLogger(__name__)


class Session:
    """One caller (an ``evs`` process) and the clean-ups to run when it goes away.

    An export made for a copy lives as long as the ``evs`` that asked for it: it registers
    its undoing with ``on_close``, which runs however the caller ends.
    """

    def __init__(self, peer_pid: int):
        self.peer_pid = peer_pid
        self._cleanups: list[Callable[[], None]] = []

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the caller goes away."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        """Run the clean-ups, newest first; one failing does not stop the others."""
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception:
                LOG.exception("Clean-up after the requests of pid %d failed", self.peer_pid)


class Context:
    """One request's view of the service: ``manager`` (a ``VolumeManager``), the caller's
    ``session``, and ``progress`` (only when the caller runs in this process)."""

    def __init__(
        self,
        manager: object,
        session: Session,
        progress: "Progress | None" = None,
        in_service: bool = False,
    ):
        self.manager = manager
        self.session = session
        self.progress = progress
        self.in_service = in_service
