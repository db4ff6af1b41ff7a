"""The seam between the driver and whatever serves a volume to a host (the NBD server).

The ``evs-volume`` service passes its own ``Exporter`` to the driver; a driver built
without one (the embedded ``evs`` command) cannot attach and says so.
"""

import abc

from evs_driver import exception


class Exporter(abc.ABC):
    """Makes a backend device reachable by a host and forgets it again."""

    @abc.abstractmethod
    def export(
        self,
        backend,
        device_id: str,
        read_only: bool,
        listen: dict | None = None,
        name: str | None = None,
    ) -> dict:
        """Serve ``device_id`` of ``backend``; return connection data (host, port, export name).

        ``listen`` picks the address (``{"socket": PATH}`` or ``{"host": H, "port": N}``);
        ``name`` is a second export name (the device's own name, unique to it).
        """

    @abc.abstractmethod
    def unexport(self, device_id: str) -> None:
        """Stop serving ``device_id``; a device not served is not an error."""

    def served(self, device_id: str) -> dict | None:
        """Connection info of ``device_id``'s export (with its ``connections`` count), None
        when it is not served."""
        return None

    def exports(self) -> list[dict]:
        """Connection info of every export, with its connection count."""
        return []


class NoServiceExporter(Exporter):
    """The embedded case: no server runs, so attaching explains what is missing."""

    def export(
        self,
        backend,
        device_id: str,
        read_only: bool,
        listen: dict | None = None,
        name: str | None = None,
    ) -> dict:
        """Always fails: serving a volume needs the long-running ``evs-volume`` service."""
        raise exception.AttachNeedsService(name=device_id)

    def unexport(self, device_id: str) -> None:
        """Nothing is served, so nothing to stop."""
