"""Which exports the NBD server offers, under which names, and who is connected to each.

Invariant (kept under one lock): a connection is attached only to an export that is still
registered, so removing an export sees every connection it has to close.
"""

import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from evs_driver import exception
from evs_driver.blockdev import BlockDevice
from evs_driver.nbd.metacontext import Namespace
from evs_driver.nbd.protocol import MAX_NAME_LENGTH

Opener = Callable[[], BlockDevice]
"""Returns the device a new connection serves; the server closes it when the connection ends."""


@dataclasses.dataclass(frozen=True, eq=False)
class Export:
    """One export: ``opener`` is called once per connection (and per NBD_OPT_INFO);
    ``namespaces`` offer metadata contexts on this export only."""

    name: str
    opener: Opener
    read_only: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""
    namespaces: tuple[Namespace, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every name a client may ask for."""
        return (self.name, *self.aliases)


class Closable(Protocol):
    """What the registry needs from a connection: a way to end it from another thread."""

    def close(self) -> None:
        """End the connection; it releases its device as it unwinds."""


class ExportRegistry:
    """Thread-safe map of export names and aliases to exports, with their live connections."""

    def __init__(self, max_connections_per_export: int | None = None):
        self.max_connections_per_export = max_connections_per_export
        self._lock = threading.Lock()
        self._by_key: dict[str, Export] = {}
        self._exports: dict[str, Export] = {}
        self._connections: dict[Export, set[Closable]] = {}

    def add(
        self,
        name: str,
        opener: Opener,
        read_only: bool = False,
        aliases: Iterable[str] = (),
        description: str = "",
        namespaces: Iterable[Namespace] = (),
    ) -> Export:
        """Register an export; ``AlreadyExists`` if the name or an alias is taken."""
        unique = tuple(alias for alias in dict.fromkeys(aliases) if alias != name)
        export = Export(name, opener, read_only, unique, description, tuple(namespaces))
        for key in export.keys:
            _check_name(key)
        with self._lock:
            for key in export.keys:
                if key in self._by_key:
                    raise exception.AlreadyExists(kind="NBD export name", name=key)
            for key in export.keys:
                self._by_key[key] = export
            self._exports[name] = export
            self._connections[export] = set()
        return export

    def remove(self, name: str) -> tuple[Export, list[Closable]]:
        """Unregister an export (by name or alias); return it and its live connections."""
        with self._lock:
            export = self._by_key.get(name)
            if export is None:
                raise exception.NotFound(kind="NBD export", name=name)
            for key in export.keys:
                del self._by_key[key]
            del self._exports[export.name]
            return export, list(self._connections.pop(export))

    def lookup(self, key: str) -> Export | None:
        """The export a client's name refers to, or None."""
        return self._by_key.get(key)

    def exports(self) -> list[Export]:
        """All exports, sorted by name."""
        with self._lock:
            return [self._exports[name] for name in sorted(self._exports)]

    def attach(self, export: Export, connection: Closable) -> None:
        """Record a connection to ``export``: ``NotFound`` when it was removed meanwhile,
        ``NBDExportFull`` when it has its maximum of connections."""
        limit = self.max_connections_per_export
        with self._lock:
            connections = self._connections.get(export)
            if connections is None:
                raise exception.NotFound(kind="NBD export", name=export.name)
            if limit is not None and len(connections) >= limit:
                raise exception.NBDExportFull(name=export.name, limit=limit)
            connections.add(connection)

    def detach(self, export: Export, connection: Closable) -> None:
        """Forget a connection that ended (a no-op after the export was removed)."""
        with self._lock:
            self._connections.get(export, set()).discard(connection)

    def connection_count(self, name: str) -> int:
        """Live connections to an export (by name or alias)."""
        with self._lock:
            export = self._by_key.get(name)
            return len(self._connections[export]) if export else 0


def _check_name(name: str) -> None:
    try:
        encoded = name.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise exception.InvalidInput(reason=f"NBD export name {name!r} is not text") from None
    if len(encoded) > MAX_NAME_LENGTH or "\0" in name:
        raise exception.InvalidInput(
            reason=f"NBD export name {name[:64]!r} must be at most 4096 bytes without NUL"
        )
