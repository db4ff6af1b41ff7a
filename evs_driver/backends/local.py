"""The ``local`` backend: the Backend contract over the rowstore ``Pool``.

A pool allows one process at a time, so this backend opens it only while something uses
it (an operation, an open device, or ``hold_open`` for a long-running service),
under a file lock that other processes wait on. ``setup`` opens it and leaves it to
the first user, so a command that sets up, checks and holds its backend opens it once.
Threads of one process share the open pool, which is thread-safe. Ids from the catalog are the pool's device names.
"""

import contextlib
import os
import threading
from collections.abc import Iterator

from evs_driver import exception, fileio
from evs_driver.backends import base
from evs_driver.backends.known_pools import KnownPools
from evs_driver.conf import backend_option_error
from evs_driver.conf.local import MAX_CHUNK, MIN_CHUNK
from evs_driver.locking import FileLock
from evs_driver.rowstore import Pool
from evs_driver.rowstore.blockdevice import PoolDevice
from evs_driver.units import GiB, MiB

DIFF_PAGE = 4096  # runs of a diff the engine gives per call (the metadata lock is let go)


class LocalBackend(base.Backend):
    """A redirect-on-write pool in a directory on a local file system."""

    storage_protocol = "nbd"

    def __init__(self, conf, backend_name: str):
        super().__init__(conf, backend_name)
        self.path: str | None = None
        self._lock: FileLock | None = None
        self._guard = threading.Lock()  # guards _pool and _users
        self._pool: Pool | None = None
        self._users = 0
        self._held = False

    # -- lifecycle ------------------------------------------------------------------
    def setup(self) -> None:
        """Check the options, create the pool on first use, and make sure it opens.

        A pool is created only where none was before: a known pool that is missing (an
        unmounted file system) makes the backend unavailable instead, naming the path.
        """
        capacity, chunk = self._locate()
        if not self._pool_present() and self._known.knows(self.path):
            # Before taking the lock: not even a lock file on a file system that is missing.
            raise exception.PoolMissing(backend=self.backend_name, path=self.path)
        try:
            self._lock.acquire()
        except OSError as exc:
            raise self._option_error(self._option, f"cannot use {self.path}: {exc}") from exc
        try:
            if not self._pool_present():
                if self._known.knows(self.path):
                    raise exception.PoolMissing(backend=self.backend_name, path=self.path)
                if not self.conf.local_pool_create:
                    raise self._option_error(
                        self._option, f"no pool at {self.path} and local_pool_create is false"
                    )
                self._create(capacity, chunk)
            elif not self._known.knows(self.path):
                self._known.add(self.path, self.backend_name)  # made by an older version
        finally:
            self._lock.release()
        with self._guard:
            self._open_pool()  # kept for the first user: a command opens its pool once

    def create_pool(self) -> None:
        """Create a new, empty pool where none is (``evs pool create``)."""
        capacity, chunk = self._locate()
        self._lock.acquire()
        try:
            if self._pool_present():
                raise exception.AlreadyExists(kind="Pool", name=self.path)
            self._create(capacity, chunk)
        finally:
            self._lock.release()

    def validate_config(self) -> None:
        """Refuse a chunk size that is not a power of two, or a pool path that cannot be
        made, without creating anything."""
        self._check_options()
        parent = os.path.dirname(self.path)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK | os.X_OK) and not os.path.isdir(self.path):
            raise self._option_error(self._option, f"{parent} is not writable")

    def _check_options(self) -> None:
        chunk = self.conf.local_pool_chunk_size
        if chunk & (chunk - 1):
            raise self._option_error(
                "local_pool_chunk_size",
                f"{chunk} is not a power of two between {MIN_CHUNK} and {MAX_CHUNK}",
            )
        state_path = os.path.abspath(os.path.expanduser(self.conf.state_path))
        default_path = os.path.join(state_path, "pools", self.backend_name)
        self.path = os.path.abspath(os.path.expanduser(self.conf.local_pool_path or default_path))
        self._option = "local_pool_path" if self.conf.local_pool_path else "state_path"
        self._known = KnownPools(state_path)

    def _locate(self) -> tuple[int, int]:
        """Check the options and find the pool's path; returns (capacity, chunk size)."""
        self._check_options()
        try:
            fileio.private_dir(os.path.dirname(self.path))
        except OSError as exc:
            raise self._option_error(
                self._option, f"cannot create {self.path}: {exc.strerror}"
            ) from exc
        if not os.access(os.path.dirname(self.path), os.W_OK):
            raise self._option_error(self._option, f"{os.path.dirname(self.path)} is not writable")
        self._lock = FileLock(self.path + ".lock", self.conf.lock_timeout, f"pool {self.path}")
        return self.conf.local_pool_capacity_gb * GiB, self.conf.local_pool_chunk_size

    def _create(self, capacity: int, chunk: int) -> None:
        try:
            Pool.create(self.path, capacity, chunk).close()
        except OSError as exc:
            raise self._option_error(
                self._option, f"cannot create a pool at {self.path}: {exc}"
            ) from exc
        self._known.add(self.path, self.backend_name)

    def _pool_present(self) -> bool:
        return os.path.isdir(self.path) and bool(os.listdir(self.path))

    def _option_error(self, name: str, reason: str) -> exception.ConfigError:
        return backend_option_error(self.conf, name, reason)

    def check_setup(self) -> None:
        """Fail when setup did not run or the pool no longer opens."""
        if self._lock is None:
            raise exception.BackendError(backend=self.backend_name, reason="setup() did not run")
        with self._guard:
            if self._pool is not None:
                return  # it opened (since setup, or for a user) and it stays open for them
        with self._open():
            pass

    def hold_open(self) -> None:
        """Keep the pool open (and other processes out) until ``close``: for services."""
        if not self._held:
            self._enter = contextlib.ExitStack()
            self._enter.enter_context(self._open())
            self._held = True

    def close(self) -> None:
        """Release a pool held open by ``hold_open`` (or still open since ``setup``)."""
        if self._held:
            self._held = False
            self._enter.close()
        with self._guard:
            if self._pool is not None and not self._users:
                self._close_pool()

    def _open_pool(self) -> Pool:
        """The open pool, opened now if need be (call with ``_guard`` held)."""
        if self._pool is None:
            self._lock.acquire()
            try:
                self._pool = Pool.open(
                    self.path, node_cache_bytes=self.conf.local_pool_node_cache_mb * MiB
                )
            except BaseException as exc:
                self._lock.release()
                if isinstance(exc, exception.InvalidPool):
                    raise self._option_error(self._option, exc.msg) from exc
                if isinstance(exc, exception.PoolCorrupt):
                    raise exception.BackendUnavailable(
                        backend=self.backend_name, reason=exc.msg
                    ) from exc
                if isinstance(exc, OSError):
                    raise exception.BackendUnavailable(
                        backend=self.backend_name, reason=f"cannot open {self.path}: {exc}"
                    ) from exc
                raise
        return self._pool

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        try:
            pool.close()
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def _open(self) -> Iterator[Pool]:
        """The open pool for the block: opened by its first user (or by ``setup``), closed
        after its last."""
        with self._guard:
            pool = self._open_pool()
            self._users += 1
        try:
            yield pool
        finally:
            with self._guard:
                self._users -= 1
                if self._users == 0:
                    self._close_pool()

    # -- volumes and snapshots -----------------------------------------------------------
    def create_volume(self, volume_id: str, size: int) -> None:
        """Create an empty thin volume."""
        with self._open() as pool:
            pool.create_volume(volume_id, size)

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume; missing is fine."""
        self._delete(volume_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot; missing is fine."""
        self._delete(snapshot_id)

    def _delete(self, name: str) -> None:
        with self._open() as pool, contextlib.suppress(exception.NotFound):
            pool.delete(name)

    def extend_volume(self, volume_id: str, new_size: int) -> None:
        """Grow a volume."""
        with self._open() as pool:
            pool.extend(volume_id, new_size)

    def create_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Share the volume's current root: no data copied."""
        with self._open() as pool:
            pool.create_snapshot(volume_id, snapshot_id)

    def create_volume_from_snapshot(self, snapshot_id: str, volume_id: str, size: int) -> None:
        """A linked clone of the snapshot."""
        with self._open() as pool:
            pool.clone(snapshot_id, volume_id, size)

    def clone_volume(self, source_volume_id: str, volume_id: str, size: int) -> None:
        """A linked clone of the volume's current content."""
        with self._open() as pool:
            pool.clone(source_volume_id, volume_id, size)

    def revert_to_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Point the volume at the snapshot's blocks, keeping its size and every snapshot."""
        with self._open() as pool:
            pool.revert(volume_id, snapshot_id)

    supports_groups = True

    def snapshot_all(self, pairs: list[tuple[str, str]]) -> None:
        """One engine transaction, every member's write lock held together."""
        with self._open() as pool:
            pool.snapshot_all(pairs)

    def clone_all(self, items: list[tuple[str, str, int]]) -> None:
        """Linked clones of every source at one instant (one engine transaction)."""
        with self._open() as pool:
            pool.clone_all(items)

    def revert_all(self, pairs: list[tuple[str, str]]) -> None:
        """Every volume to its snapshot in one engine transaction."""
        with self._open() as pool:
            pool.revert_all(pairs)

    supports_diffs = True

    def changed_extents(self, old_id: str | None, new_id: str) -> Iterator[tuple[int, int, str]]:
        """The engine's diff of the two trees, asked for a page of runs at a time."""
        with self._open() as pool:
            sizes = [pool.device(name).size for name in (old_id, new_id) if name is not None]
            position, end = 0, max(sizes)
            while position < end:
                runs, position = pool.diff(old_id, new_id, position, end - position, DIFF_PAGE)
                yield from runs

    # -- information ---------------------------------------------------------------------
    def exists(self, device_id: str) -> bool:
        """True when the pool has a device with this id."""
        with self._open() as pool:
            return pool.exists(device_id)

    def device_usage(self, device_id: str) -> base.DeviceUsage:
        """Size, mapped and exclusive bytes of one device."""
        with self._open() as pool:
            info = pool.device(device_id)
            return base.DeviceUsage(
                size=info.size,
                mapped_bytes=info.mapped_bytes,
                exclusive_bytes=pool.exclusive_bytes(device_id),
            )

    def device_ids(self) -> list[str]:
        """Names of every device in the pool (for ``pool check``)."""
        with self._open() as pool:
            return [info.name for info in pool.devices()]

    def pool_stats(self) -> base.PoolStats:
        """The pool's capacity figures, bounded by what its file system can still hold: a
        sparse data file promises more than a small or full disk can keep."""
        with self._open() as pool:
            usage = pool.usage()
        fs = os.statvfs(self.path)
        fs_free = fs.f_bavail * fs.f_frsize
        return base.PoolStats(
            total_bytes=min(usage.total_bytes, usage.used_bytes + fs_free),
            free_bytes=min(usage.free_bytes, fs_free),
            provisioned_bytes=usage.provisioned_bytes,
            volume_count=usage.volumes,
            snapshot_count=usage.snapshots,
            metadata_bytes=usage.metadata_bytes,
            allocated_bytes=_allocated(self.path),
        )

    def check(self) -> base.CheckReport:
        """The engine's reference-count check."""
        with self._open() as pool:
            return pool.check()

    def collect(self) -> None:
        """Free deleted devices' space now."""
        with self._open() as pool:
            pool.collect()

    # -- data path -----------------------------------------------------------------------
    def open_device(self, device_id: str, writable: bool) -> PoolDevice:
        """A block device over one pool device; the pool stays open until it closes."""
        return _PoolDevice(self, device_id, writable)

    def connection_properties(self, device_id: str) -> dict:
        """Where the pool lives and which device to serve."""
        return {"pool_path": self.path, "device": device_id}


def _allocated(directory: str) -> int:
    """Bytes the files of a pool directory take on disk (holes are not counted)."""
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


class _PoolDevice(PoolDevice):
    """A pool device that keeps the backend's pool open while it is in use."""

    def __init__(self, backend: LocalBackend, name: str, writable: bool):
        self._stack = contextlib.ExitStack()
        pool = self._stack.enter_context(backend._open())
        try:
            super().__init__(pool, name, writable)
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()
