"""What one NBD server may spend on its clients: connections, buffers and waiting time.

Memory is bounded by construction: a connection owns one receive buffer (``RECEIVE_BUFFER``)
and one reply buffer of ``max_bytes_in_flight``; larger requests are streamed through the
latter piece by piece, and while replies wait for the client no further request is read.
"""

import dataclasses
import threading

from evs_driver import exception

RECEIVE_BUFFER = 256 * 1024  # per connection, for request headers and small write payloads
MIN_IN_FLIGHT = 64 * 1024
REFUSING_AT_ONCE = 16  # connections over the cap told so with an NBD error; more are just closed
REFUSAL_TIMEOUT = 5.0  # seconds a refused client gets to hear why


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps for a server (``max_connections`` may be shared by several, see ``Slots``)."""

    max_connections: int = 64
    max_connections_per_export: int = 16
    max_bytes_in_flight: int = 2 * 1024 * 1024
    handshake_timeout: float = 30.0
    io_timeout: float | None = 120.0  # None: a stalled request is waited for forever

    def __post_init__(self):
        problems = []
        if self.max_connections < 1:
            problems.append("max_connections must be at least 1")
        if self.max_connections_per_export < 1:
            problems.append("max_connections_per_export must be at least 1")
        if self.max_bytes_in_flight < MIN_IN_FLIGHT:
            problems.append(f"max_bytes_in_flight must be at least {MIN_IN_FLIGHT}")
        if not self.handshake_timeout > 0:
            problems.append("handshake_timeout must be positive")
        if self.io_timeout is not None and not self.io_timeout > 0:
            problems.append("io_timeout must be positive (or None for no limit)")
        if problems:
            raise exception.InvalidInput(reason="NBD limits: " + "; ".join(problems))


class Slots:
    """A thread-safe count of open connections against a maximum."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self._lock = threading.Lock()
        self._used = 0

    def take(self) -> bool:
        """Take a slot; False when all are in use."""
        with self._lock:
            if self._used >= self.maximum:
                return False
            self._used += 1
            return True

    def give_back(self) -> None:
        """Return a slot taken with ``take``."""
        with self._lock:
            self._used -= 1

    @property
    def used(self) -> int:
        """Slots in use right now."""
        with self._lock:
            return self._used
