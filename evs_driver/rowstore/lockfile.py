"""One process per pool: an exclusive ``flock`` the kernel drops when the holder dies."""

import fcntl
import os

from evs_driver import exception


class PoolLock:
    """Holds ``path`` locked; the file records the holder's pid for the error message."""

    def __init__(self, path: str, pool_path: str):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise exception.InvalidPool(
                path=pool_path, reason=f"cannot open its lock file {path}: {err.strerror}"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise exception.PoolBusy(path=pool_path, holder=f"pid {holder}") from None
        if os.fstat(self.fd).st_uid == os.geteuid():
            os.fchmod(self.fd, 0o600)  # os.open's mode passes through the umask
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
