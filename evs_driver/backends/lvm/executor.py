"""Run LVM commands: root helper, timeout, retries of known transient failures, error mapping.

Every LVM command of the backend goes through ``LvmExecutor.run`` so these concerns live
in one place; what the output means is ``report``'s job, what to do is the backend's.
"""

import os
import shlex
import subprocess
import time

from oslo_concurrency import processutils

from evs_driver.backends.lvm import errors

# LVM's output must not depend on the host's locale: errors are matched by text.
_ENV = {"LC_ALL": "C", "LANG": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}


class LvmExecutor:
    """Runs commands as root through ``root_helper`` and maps failures to project errors."""

    def __init__(
        self,
        backend: str,
        root_helper: str = "",
        timeout: int = 120,
        retries: int = 3,
        retry_delay: float = 0.5,
    ):
        self.backend = backend
        self._helper = tuple(shlex.split(root_helper))
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay

    def run(self, *cmd: str, retry: bool = False) -> str:
        """Run ``cmd``; return its stdout, or raise the ``EVSError`` its failure maps to.

        With ``retry``, a failure LVM reports as transient (an LV still busy) is tried again
        up to ``retries`` times, waiting a little longer each time.
        """
        attempt = 0
        while True:
            try:
                return self._execute(cmd)
            except processutils.ProcessExecutionError as exc:
                stderr = exc.stderr or ""
                if retry and attempt < self.retries and errors.is_transient(stderr):
                    attempt += 1
                    time.sleep(self.retry_delay * attempt)
                    continue
                raise errors.from_lvm(self.backend, cmd, exc.exit_code, stderr) from exc

    def _execute(self, cmd: tuple[str, ...]) -> str:
        started: list[subprocess.Popen] = []
        try:
            # The helper is prepended here: processutils would skip it when already root,
            # and a configured helper (e.g. rootwrap's filters) must always apply.
            stdout, _ = processutils.execute(
                *self._helper,
                *cmd,
                env_variables={**os.environ, **_ENV},  # it replaces the whole environment
                timeout=self.timeout,
                on_execute=started.append,
            )
        except subprocess.TimeoutExpired as exc:
            # processutils leaves the child running on a timeout: end it here.
            for proc in started:
                proc.kill()
                proc.wait()
            raise errors.timeout(self.backend, self._helper + cmd, self.timeout) from exc
        except OSError as exc:
            raise errors.command_missing(self.backend, self._helper + cmd, exc) from exc
        return stdout
