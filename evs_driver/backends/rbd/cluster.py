"""One connection to a Ceph cluster: the rados handle, the backend's I/O context, timeouts,
and the translation of librados/librbd errors into ``EVSError``.

Every monitor and OSD request carries ``rbd_operation_timeout`` (``rados_*_op_timeout``), so
a stopped OSD fails an operation with ``BackendTimeout`` instead of hanging it; connecting
waits ``rbd_connect_timeout`` for the monitors and then reports the backend down.
"""

import contextlib
import errno
import json
import os
from collections.abc import Iterator

from evs_driver import exception
from evs_driver.backends.rbd import bindings
from evs_driver.conf import backend_option_error

_NOT_ANSWERING = "the Ceph cluster did not answer (an OSD or monitor down or unreachable?)"


class Cluster:
    """A connected ``rados.Rados`` handle and an I/O context on the backend's pool/namespace."""

    def __init__(self, conf, backend_name: str):
        self.conf = conf
        self.backend_name = backend_name
        self.pool = conf.rbd_pool
        self.namespace = conf.rbd_namespace or ""
        self.user = conf.rbd_user
        self.timeout = conf.rbd_operation_timeout
        self.rados, self.rbd = bindings.load()
        self.handle = None
        self.ioctx = None

    # -- connecting ---------------------------------------------------------------------
    def connect(self) -> None:
        """Connect and open the pool; ``BackendUnavailable`` when the monitors do not answer."""
        conf = self.conf
        for name in ("rbd_ceph_conf", "rbd_keyring"):
            path = getattr(conf, name)
            if path and not os.access(path, os.R_OK):
                raise backend_option_error(conf, name, f"{path} is not a readable file")
        settings = {
            "rados_osd_op_timeout": str(self.timeout),
            "rados_mon_op_timeout": str(self.timeout),
            "client_mount_timeout": str(conf.rbd_connect_timeout),
            # An OSD request unanswered this long makes librados fetch a new OSD map (a
            # restarted OSD has a new address); it must come before the request times out,
            # or a client never finds an OSD that restarted.
            "objecter_timeout": str(max(1, self.timeout // 3)),
            "objecter_tick_interval": "1",
            # Clone v2: children of unprotected snapshots, and deletable parents (trash).
            "rbd_default_clone_format": "2",
            # A discarded range reads as zeros even where it covers part of an object.
            "rbd_skip_partial_discard": "false",
            # No librbd write-back cache: our device keeps its own writes in flight, and the
            # cache would retry writes to a stopped OSD forever instead of failing them.
            "rbd_cache": "false",
        }
        if conf.rbd_keyring:
            settings["keyring"] = conf.rbd_keyring
        handle = self.rados.Rados(
            conffile=conf.rbd_ceph_conf,
            rados_id=self.user,
            clustername=conf.rbd_cluster_name,
            conf=settings,
        )
        try:
            handle.connect(timeout=conf.rbd_connect_timeout)
        except self.rados.Error as exc:
            handle.shutdown()
            raise self._connect_error(exc) from None
        self.handle = handle
        if not self.handle.pool_exists(self.pool):
            raise backend_option_error(conf, "rbd_pool", f"pool {self.pool} does not exist")
        with self.errors("opening pool " + self.pool):
            self.ioctx = self.handle.open_ioctx(self.pool)

    def _connect_error(self, exc: Exception) -> exception.EVSError:
        code = getattr(exc, "errno", None)
        who = f"client.{self.user or 'admin'}"
        if code in (errno.EACCES, errno.EPERM):
            return backend_option_error(
                self.conf,
                "rbd_user",
                f"the cluster refused {who}: check rbd_user and rbd_keyring ({exc})",
            )
        if code == errno.ENOENT:
            return backend_option_error(
                self.conf, "rbd_keyring", f"no key for {who} in the keyring ({exc})"
            )
        return exception.BackendUnavailable(
            backend=self.backend_name,
            reason=f"no answer from the Ceph monitors of {self.conf.rbd_ceph_conf} within "
            f"{self.conf.rbd_connect_timeout} s (rbd_connect_timeout): {exc}",
        )

    def close(self) -> None:
        """Close the I/O context and the connection."""
        if self.ioctx is not None:
            self.ioctx.close()
            self.ioctx = None
        if self.handle is not None:
            self.handle.shutdown()
            self.handle = None

    def use_namespace(self) -> None:
        """Point the I/O context at the backend's namespace, creating it when missing."""
        rbd = self.rbd.RBD()
        if self.namespace:
            with self.errors(f"creating namespace {self.pool}/{self.namespace}"):
                if not rbd.namespace_exists(self.ioctx, self.namespace):
                    rbd.namespace_create(self.ioctx, self.namespace)
        self.ioctx.set_namespace(self.namespace)

    # -- commands -----------------------------------------------------------------------
    def mon(self, prefix: str, **args) -> dict | list:
        """A monitor command's JSON answer."""
        command = json.dumps({"prefix": prefix, "format": "json", **args})
        with self.errors(prefix):
            ret, out, err = self.handle.mon_command(command, b"", timeout=self.timeout)
        if ret < 0:
            raise self.translate(OSError(-ret, err or os.strerror(-ret)), prefix)
        return json.loads(out)

    def spec(self, name: str) -> str:
        """``pool/[namespace/]image``: the image spec the ``rbd`` CLI and QEMU take."""
        parts = [self.pool, self.namespace, name] if self.namespace else [self.pool, name]
        return "/".join(parts)

    # -- errors -------------------------------------------------------------------------
    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Re-raise librados/librbd errors in the block as ``EVSError`` naming ``action``."""
        try:
            yield
        except exception.EVSError:
            raise
        except (self.rados.Error, self.rbd.Error, OSError) as exc:
            raise self.translate(exc, action) from exc

    def translate(self, exc: Exception, action: str) -> exception.EVSError:
        """The ``EVSError`` for a librados/librbd error."""
        code = getattr(exc, "errno", None)
        code = abs(code) if isinstance(code, int) else None
        if code == errno.ETIMEDOUT:
            return exception.BackendTimeout(
                backend=self.backend_name, action=action, timeout=self.timeout,
                reason=_NOT_ANSWERING,
            )  # fmt: skip
        if code in (errno.ENOSPC, errno.EDQUOT):
            return exception.PoolFull(pool=self.spec("").rstrip("/"), detail=f"{action}: {exc}")
        if code in (errno.EACCES, errno.EPERM):
            return exception.BackendError(
                backend=self.backend_name,
                reason=f"{action}: client.{self.user or 'admin'} may not do this; its caps need "
                f"'profile rbd pool={self.pool}' for mon, osd and mgr ({exc})",
            )
        if code in (errno.ESHUTDOWN, errno.ENOTCONN):
            return exception.BackendUnavailable(
                backend=self.backend_name, reason=f"{action}: {exc}"
            )
        return exception.BackendError(backend=self.backend_name, reason=f"{action}: {exc}")
