"""The pools a state path has created, so that a missing one is never silently replaced.

A pool directory that is missing or empty (a file system that did not mount, say) looks
exactly like one that never existed; only a record kept elsewhere tells them apart. This
file, beside the catalog, is that record: a pool is created at start only when it is not
in it, and ``evs pool create`` is the explicit way to start over.
"""

import json
import os

from evs_driver import exception, fileio
from evs_driver.locking import FileLock

FILE_NAME = "known_pools.json"


class KnownPools:
    """``{pool path: {"backend": name}}`` in ``<state_path>/known_pools.json``."""

    def __init__(self, state_path: str):
        self.path = os.path.join(state_path, FILE_NAME)
        self._lock = FileLock(self.path + ".lock", timeout=30, what=self.path)

    def exist(self) -> bool:
        """True once this state path has made (or found) a pool."""
        return os.path.exists(self.path)

    def knows(self, pool_path: str) -> bool:
        """True when a pool was created (or found) at ``pool_path`` before."""
        return pool_path in self._read()

    def add(self, pool_path: str, backend: str) -> None:
        """Remember ``pool_path`` (written atomically: a crash keeps the old or new file)."""
        self._lock.acquire()
        try:
            pools = self._read()
            pools[pool_path] = {"backend": backend}
            partial = self.path + ".partial"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(fd, "w") as f:
                json.dump(pools, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, self.path)
            fileio.sync_dir(os.path.dirname(self.path))
        finally:
            self._lock.release()

    def _read(self) -> dict:
        try:
            with open(self.path) as f:
                pools = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise exception.ConfigError(
                reason=f"cannot read {self.path}, the record of the pools this state path "
                f"made ({exc}); restore it from a backup, or remove it to trust the pool "
                "directories as they are"
            ) from exc
        if not isinstance(pools, dict):
            raise exception.ConfigError(
                reason=f"{self.path} is not a JSON object; restore it from a backup, or remove "
                "it to trust the pool directories as they are"
            )
        return pools
