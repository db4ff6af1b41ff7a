"""What the ``evs`` command calls: one object per way of reaching the volume manager.

``EmbeddedClient`` runs a ``VolumeManager`` in this process. A ``ServiceClient`` talking
to the ``evs-volume`` service over its socket offers the same methods and returns the
same plain dicts, so the command does not care which one it has.
"""

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator

from oslo_config import cfg

from evs_driver import catalog, exception, rules
from evs_driver.locking import FileLock
from evs_driver.manager import VolumeManager
from evs_driver.service import imageio, protocol
from evs_driver.service.exporter import NBDExporter

GiB = 1024**3
SERVICE_WAIT = 30.0  # seconds to wait for a starting service (recovery may take a while)

VOLUME_FIELDS = (
    "id",
    "display_name",
    "display_description",
    "size",
    "status",
    "backend",
    "created_at",
    "updated_at",
    "source_snapshot_id",
    "source_volume_id",
    "full_clone",
    "progress",
    "metadata",
)
SNAPSHOT_FIELDS = (
    "id",
    "display_name",
    "display_description",
    "volume_id",
    "volume_size",
    "status",
    "backend",
    "created_at",
    "updated_at",
    "metadata",
)


def _rename(fields: dict) -> dict:
    """Catalog field names to the names operators see."""
    out = {}
    for key, value in fields.items():
        key = {"display_name": "name", "display_description": "description"}.get(key, key)
        out["size" if key == "volume_size" else key] = value
    return out


@contextlib.contextmanager
def _private_socket() -> Iterator[dict]:
    """An NBD listen address in a fresh owner-only directory (short: sockets are <108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="evs-nbd-") as directory:
        yield {"socket": os.path.join(directory, "nbd.sock")}


def _bar(progress) -> bool:
    """Whether qemu-img should draw its own progress bar (ours would on a terminal)."""
    return bool(getattr(progress, "enabled", False))


def _image(path: str, raw_natively: bool) -> imageio.ImageInfo | None:
    """The image's qemu-img info when qemu-img copies it; None for our own raw copy."""
    if not imageio.available() or not os.access(path, os.R_OK):
        return None  # the raw copy reports a missing or unreadable file itself
    info = imageio.inspect(path)
    return None if raw_natively and info.format == "raw" else info


class EmbeddedClient:
    """Runs the operations in this process through a ``VolumeManager``.

    ``manager``: a manager to share (the service's); by default one is made, with a
    private NBD exporter for qemu-img copies of non-raw images.
    """

    def __init__(self, conf: cfg.ConfigOpts, manager: VolumeManager | None = None):
        self.conf = conf
        self._exporter = None
        if manager is None:
            self._exporter = NBDExporter(default_socket=None)
            manager = VolumeManager(conf, exporter=self._exporter)
        self.manager = manager

    def close(self) -> None:
        """Release the manager's backends (only a manager this client made)."""
        if self._exporter is not None:
            self._exporter.close()
            self.manager.close()

    # -- views --------------------------------------------------------------------------
    def _volume(self, volume: catalog.Volume, usage: bool = False) -> dict:
        view = _rename({key: volume[key] for key in VOLUME_FIELDS})
        if usage:
            found = self.manager.usage(volume)
            view["mapped_bytes"] = found.mapped_bytes if found else None
            view["snapshots"] = len(self.manager.list_snapshots(volume.id))
        return view

    def _snapshot(self, snapshot: catalog.Snapshot) -> dict:
        view = _rename({key: snapshot[key] for key in SNAPSHOT_FIELDS})
        found = self.manager.usage(snapshot)
        view["exclusive_bytes"] = found.exclusive_bytes if found else None
        return view

    # -- pools --------------------------------------------------------------------------
    def pool_show(self) -> list[dict]:
        """One row per backend: where it lives and its Cinder statistics."""
        rows = []
        for name, stats in self.manager.pool_stats().items():
            driver = self.manager.drivers[name]
            rows.append(
                {"backend": name, "state_path": self.manager.state_path}
                | driver.describe()
                | stats
                | {"snapshots": driver.pool_stats().snapshot_count}
            )
        return rows

    def pool_check(self) -> dict[str, list[str]]:
        """Problems per backend (empty lists when clean)."""
        return self.manager.check()

    # -- volumes ------------------------------------------------------------------------
    def volume_create(self, **kwargs) -> dict:
        """Create a volume; see ``VolumeManager.create_volume``."""
        return self._volume(self.manager.create_volume(**kwargs))

    def volume_list(self) -> list[dict]:
        """Every volume."""
        return [self._volume(v) for v in self.manager.list_volumes()]

    def volume_show(self, ref: str) -> dict:
        """One volume, with its mapped bytes and snapshot count."""
        return self._volume(self.manager.get_volume(ref), usage=True)

    def volume_delete(self, ref: str, cascade: bool = False) -> None:
        """Delete a volume."""
        self.manager.delete_volume(ref, cascade=cascade)

    def volume_extend(self, ref: str, size: int) -> dict:
        """Grow a volume."""
        return self._volume(self.manager.extend_volume(ref, size))

    def volume_revert(self, ref: str, snapshot: str) -> dict:
        """Revert a volume to one of its snapshots."""
        return self._volume(self.manager.revert_volume(ref, snapshot))

    def volume_import(self, ref: str, path: str, progress=None) -> dict:
        """Write an image onto a volume: raw ourselves, other formats with qemu-img."""
        info = _image(path, raw_natively=True) if self._exporter is not None else None
        if info is None:
            written = self.manager.import_volume(ref, path, progress)
            return {"volume": self.manager.get_volume(ref).id, "file": path, "data_bytes": written}
        volume = self.manager.get_volume(ref)
        with self._attached(volume.id, read_only=False) as uri:
            imageio.import_image(path, info, uri, volume.size * GiB, _bar(progress))
        return _imported(volume.id, path, info)

    def volume_export(self, ref: str, path: str, progress=None, image_format: str = "raw") -> dict:
        """Write a volume to an image: raw ourselves, other formats with qemu-img."""
        if image_format == "raw" or self._exporter is None:
            written = self.manager.export("volume", ref, path, progress)
            return {"volume": self.manager.get_volume(ref).id, "file": path, "data_bytes": written}
        volume = self.manager.get_volume(ref)
        with self._attached(volume.id, read_only=True) as uri:
            imageio.export_image(uri, path, image_format, _bar(progress))
        return {"volume": volume.id, "file": path, "format": image_format}

    @contextlib.contextmanager
    def _attached(self, volume_id: str, read_only: bool) -> Iterator[str]:
        """The volume attached (in-use) on a private NBD socket for a qemu-img copy."""
        with _private_socket() as listen:
            connector = {"host": "evs", "nbd_listen": listen, "access_mode": "rw"}
            if read_only:
                connector["access_mode"] = "ro"
            info = self.manager.attach_volume(volume_id, connector)
            try:
                yield info["data"]["uri"]
            finally:
                self.manager.detach_volume(volume_id, {})

    def volume_reset_state(self, ref: str, state: str) -> dict:
        """Force a volume's status (operators only)."""
        return self._volume(self.manager.reset_status("volume", ref, state))

    # -- snapshots ----------------------------------------------------------------------
    def snapshot_create(self, volume: str, **kwargs) -> dict:
        """Snapshot a volume."""
        return self._snapshot(self.manager.create_snapshot(volume, **kwargs))

    def snapshot_list(self, volume: str | None = None) -> list[dict]:
        """Every snapshot, or one volume's."""
        return [self._snapshot(s) for s in self.manager.list_snapshots(volume)]

    def snapshot_show(self, ref: str) -> dict:
        """One snapshot with its exclusive bytes."""
        return self._snapshot(self.manager.get_snapshot(ref))

    def snapshot_delete(self, ref: str) -> None:
        """Delete a snapshot."""
        self.manager.delete_snapshot(ref)

    def snapshot_export(
        self, ref: str, path: str, progress=None, image_format: str = "raw"
    ) -> dict:
        """Write a snapshot to an image: raw ourselves, other formats with qemu-img."""
        if image_format == "raw" or self._exporter is None:
            written = self.manager.export("snapshot", ref, path, progress)
            return {
                "snapshot": self.manager.get_snapshot(ref).id,
                "file": path,
                "data_bytes": written,
            }
        snapshot = self.manager.get_snapshot(ref)
        rules.expect_status("Snapshot", snapshot, ("available",), "exporting")
        driver = self.manager.driver_for(snapshot)
        with _private_socket() as listen:
            info = driver.initialize_connection_snapshot(snapshot, {"nbd_listen": listen})
            try:
                imageio.export_image(info["data"]["uri"], path, image_format, _bar(progress))
            finally:
                driver.terminate_connection_snapshot(snapshot, {})
        return {"snapshot": snapshot.id, "file": path, "format": image_format}

    def snapshot_reset_state(self, ref: str, state: str) -> dict:
        """Force a snapshot's status (operators only)."""
        return self._snapshot(self.manager.reset_status("snapshot", ref, state))

    # -- exports: only the service serves; without it nothing is served -----------------
    def export_list(self) -> list[dict]:
        """No service runs, so no export exists."""
        return []

    def volume_unserve(self, ref: str) -> dict:
        """Detach a volume left in-use (its export ended with the service that made it)."""
        volume = self.manager.get_volume(ref)
        self.manager.detach_volume(volume.id, {})
        return {"volume": volume.id, "status": "available"}

    def snapshot_unserve(self, ref: str) -> dict:
        """No service runs, so the snapshot is not served."""
        raise exception.NotFound(
            kind="NBD export of snapshot", name=self.manager.get_snapshot(ref).id
        )


def _imported(volume_id: str, path: str, info: imageio.ImageInfo) -> dict:
    return {
        "volume": volume_id,
        "file": path,
        "format": info.format,
        "virtual_size": info.virtual_size,
    }


class ServiceClient:
    """Sends each operation to the running ``evs-volume`` service over its control socket."""

    def __init__(self, sock: socket.socket, path: str):
        self._sock = sock
        self._reader = sock.makefile("rb")
        self.path = path

    @classmethod
    def connect(cls, path: str) -> "ServiceClient | None":
        """A client of the service on ``path``, None when nothing answers there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            raise exception.ServiceUnavailable(path=path, reason=exc.strerror or str(exc)) from exc
        client = cls(sock, path)
        try:
            client.call("ping")
        except exception.ServiceUnavailable:
            client.close()
            return None
        return client

    def close(self) -> None:
        """Hang up: exports this connection made for a copy end with it."""
        self._reader.close()
        self._sock.close()

    def call(self, method: str, *args, **kwargs):
        """One request and its reply; the service's error is raised here."""
        try:
            self._sock.sendall(protocol.request(method, args, kwargs))
            line = self._reader.readline()
        except OSError as exc:
            raise exception.ServiceUnavailable(path=self.path, reason=str(exc)) from exc
        if not line:
            raise exception.ServiceUnavailable(path=self.path, reason="it closed the connection")
        return protocol.parse_reply(line)

    def __getattr__(self, name: str):
        if name not in protocol.METHODS:
            raise AttributeError(name)

        def remote(*args, progress=None, **kwargs):
            return self.call(name, *args, **kwargs)  # no progress across the socket

        return remote

    # -- copies: qemu-img in this process against an export the service makes -----------
    def volume_import(self, ref: str, path: str, progress=None) -> dict:
        """Write an image (any qemu-img format) onto a volume through the service."""
        info = _image(path, raw_natively=False)
        if info is None:
            return self.call("volume_import", ref, os.path.abspath(path))
        size = self.call("volume_show", ref)["size"] * GiB
        with _private_socket() as listen:
            served = self.call("volume_serve", ref, listen=listen, scoped=True)
            try:
                imageio.import_image(path, info, served["uri"], size, _bar(progress))
            finally:
                self.call("volume_unserve", served["volume"])
        return _imported(served["volume"], path, info)

    def volume_export(self, ref: str, path: str, progress=None, image_format: str = "raw") -> dict:
        """Write a volume to an image through the service."""
        if not imageio.available():
            return self._raw_export("volume_export", ref, path, image_format)
        with _private_socket() as listen:
            served = self.call("volume_serve", ref, listen=listen, read_only=True, scoped=True)
            try:
                imageio.export_image(served["uri"], path, image_format, _bar(progress))
            finally:
                self.call("volume_unserve", served["volume"])
        return {"volume": served["volume"], "file": path, "format": image_format}

    def snapshot_export(
        self, ref: str, path: str, progress=None, image_format: str = "raw"
    ) -> dict:
        """Write a snapshot to an image through the service."""
        if not imageio.available():
            return self._raw_export("snapshot_export", ref, path, image_format)
        with _private_socket() as listen:
            # Scoped: the export ends when this connection does (unless it was served before).
            served = self.call("snapshot_serve", ref, listen=listen, scoped=True)
            try:
                imageio.export_image(served["uri"], path, image_format, _bar(progress))
            finally:
                if served.get("socket") == listen["socket"]:  # ours, not an earlier serve
                    self.call("snapshot_unserve", served["snapshot"])
        return {"snapshot": served["snapshot"], "file": path, "format": image_format}

    def _raw_export(self, method: str, ref: str, path: str, image_format: str) -> dict:
        if image_format != "raw":
            raise exception.InvalidInput(
                reason=f"writing {image_format} images needs qemu-img (apt-get install qemu-utils)"
            )
        return self.call(method, ref, os.path.abspath(path))


def _service_starting(conf: cfg.ConfigOpts) -> bool:
    """True while a service holds the state path's lock (it may not listen yet)."""
    probe = FileLock(protocol.lock_path(conf), timeout=0)
    try:
        probe.acquire()
    except exception.ConcurrentOperation:
        return True
    except OSError:
        return False  # no state path yet: no service either
    probe.release()
    return False


def make_client(conf: cfg.ConfigOpts) -> EmbeddedClient | ServiceClient:
    """The service's client when ``evs-volume`` runs for this state path, else an embedded one."""
    path = protocol.socket_path(conf)
    deadline = time.monotonic() + SERVICE_WAIT
    while True:
        client = ServiceClient.connect(path)
        if client is not None:
            return client
        if not _service_starting(conf):
            return EmbeddedClient(conf)
        if time.monotonic() >= deadline:
            raise exception.ServiceUnavailable(
                path=path, reason="it holds the pools but does not answer; is it stuck?"
            )
        time.sleep(0.1)


def service_running(conf: cfg.ConfigOpts) -> bool:
    """True when a service answers for this state path (used before starting one)."""
    client = ServiceClient.connect(protocol.socket_path(conf))
    if client is None:
        return False
    client.close()
    return True
