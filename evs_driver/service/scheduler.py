"""The service's scheduler: a thread that runs the snapshot schedules when they are due.

It reads the schedules from the catalog at every turn (so ``evs schedule create`` needs no
signal) and waits on its clock until the next one is due, at most ``POLL`` clock seconds.
"""

import threading

from oslo_log import log as logging

from evs_driver import scheduling

LOG = logging.getLogger(__name__)
POLL = 15.0  # clock seconds between looks at the catalog when nothing is due sooner
MIN_PAUSE = 1.0  # clock seconds: a schedule that stays due (its run failed) is not spun on


class Scheduler:
    """Runs ``manager``'s due schedules by ``clock`` until ``close``."""

    def __init__(self, manager, clock: scheduling.SystemClock):
        self.manager = manager
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread: a schedule missed while the service was down runs now, once."""
        self._thread = threading.Thread(target=self._loop, name="evs-scheduler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread, letting a run in progress finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for result in self.manager.run_due_schedules(self.clock.now()):
                    LOG.info("Schedule run: %s", result)
                pause = self.manager.seconds_to_next_run(self.clock.now())
            except Exception:  # the catalog failing now must not end the schedules for good
                LOG.exception("Running the snapshot schedules failed; retrying")
                pause = POLL
            self.clock.wait(self._stop, POLL if pause is None else min(max(pause, MIN_PAUSE), POLL))
