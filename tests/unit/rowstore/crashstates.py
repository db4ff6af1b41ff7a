"""Crash states: record a workload's writes and syncs, then build what a power cut could leave.

``RecordingDisk`` is the engine's I/O seam with a log: every write, zeroing and resize of the
data file as it happens, and, at each sync of one of SQLite's files, the 4 KiB sectors that
changed since that file's last sync (SQLite writes only between syncs, so they are placed
just before the sync). A crash state at log position ``k`` holds, for each file, everything
up to its last sync before ``k`` plus a subset (or a prefix) of its later writes, some of
them torn: a 4 KiB sector of which only the first 512-byte pieces reached the disk. That is
what a disk with a volatile cache can hold after a power cut (SQLite's crash tests and
CrashMonkey build their states the same way).
"""

import os
import random

from evs_driver.rowstore.disk import Disk

SECTOR = 4096
PIECE = 512
FILES = ("data", "metadata.sqlite", "metadata.sqlite-wal")


class RecordingDisk(Disk):
    """A ``Disk`` that logs what it does once ``start`` is called."""

    def __init__(self):
        self.events: list[tuple] = []
        self.base: dict[str, bytes] = {}
        self._names: dict[int, str] = {}
        self._synced: dict[str, bytes] = {}
        self._recording = False

    def start(self, directory: str) -> None:
        """Take the pool's files as they are (durable: just opened) and log from now on."""
        for name in FILES:
            path = os.path.join(directory, name)
            self.base[name] = _read(path)
        self._synced = dict(self.base)
        self._recording = True

    def stop(self) -> None:
        self._recording = False

    def ack(self, operation: int) -> None:
        """Operation ``operation`` of the workload returned."""
        self.events.append(("ack", operation))

    def _log(self, *event) -> None:
        if self._recording:
            self.events.append(event)

    def open(self, path: str, flags: int) -> int:
        fd = super().open(path, flags)
        self._names[fd] = os.path.basename(path)
        return fd

    def pwrite(self, fd: int, data, position: int) -> int:
        done = super().pwrite(fd, data, position)
        self._log("write", self._names[fd], position, bytes(memoryview(data)[:done]))
        return done

    def copy_within(self, fd: int, source: int, position: int, length: int) -> None:
        super().copy_within(fd, source, position, length)
        self._log("write", self._names[fd], position, os.pread(fd, length, position))

    def punch_hole(self, fd: int, position: int, length: int) -> bool:
        punched = super().punch_hole(fd, position, length)
        if punched:
            self._log("zero", self._names[fd], position, length)
        return punched

    def write_zeros(self, fd: int, position: int, length: int) -> None:
        super().write_zeros(fd, position, length)
        self._log("zero", self._names[fd], position, length)

    def truncate(self, fd: int, size: int) -> None:
        super().truncate(fd, size)
        self._log("truncate", self._names[fd], size)

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        self._log("sync", self._names[fd])

    def sync_path(self, path: str) -> None:
        name = os.path.basename(path)
        if self._recording and name in FILES:
            now, before = _read(path), self._synced.get(name, b"")
            if len(now) < len(before):
                self._log("truncate", name, len(now))
            for start in range(0, len(now), SECTOR):
                if now[start : start + SECTOR] != before[start : start + SECTOR]:
                    self._log("write", name, start, now[start : start + SECTOR])
            self._synced[name] = now
        super().sync_path(path)
        self._log("sync", name)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return b""


def _apply(images: dict[str, bytearray], event: tuple, part: int | None = None) -> None:
    """Apply one logged change; ``part``: only the first ``part`` pieces of a one-sector write."""
    kind, name = event[0], event[1]
    image = images.setdefault(name, bytearray())
    if kind == "truncate":
        del image[event[2] :]
        image.extend(bytes(event[2] - len(image)))
        return
    position = event[2]
    data = bytes(event[3]) if kind == "zero" else event[3]
    if part is not None:
        data = data[: part * PIECE]
    if len(image) < position + len(data):
        image.extend(bytes(position + len(data) - len(image)))
    image[position : position + len(data)] = data


def _sectors(event: tuple) -> list[tuple]:
    """A write split at 4 KiB boundaries: each piece may reach the disk on its own."""
    if event[0] != "write":
        return [event]
    _, name, position, data = event
    pieces, start = [], 0
    while start < len(data):
        end = min(len(data), (position + start) // SECTOR * SECTOR + SECTOR - position)
        pieces.append(("write", name, position + start, data[start:end]))
        start = end
    return pieces


def crash_state(
    base: dict, events: list[tuple], k: int, rng: random.Random, mode: str = "any"
) -> dict:
    """The files a power cut at log position ``k`` may leave: only what was synced
    (``mode="synced"``), or one of many more, chosen by ``rng``."""
    images = {name: bytearray(content) for name, content in base.items()}
    last_sync = {}
    for index in range(k):
        if events[index][0] == "sync":
            last_sync[events[index][1]] = index
    later = []
    for index in range(k):
        event = events[index]
        if event[0] in ("write", "zero", "truncate"):
            if index < last_sync.get(event[1], -1):
                _apply(images, event)
            else:
                later.extend(_sectors(event))
    if mode == "synced":
        return images
    if rng.random() < 0.3:  # a prefix: the cache wrote back in order
        for event in later[: rng.randrange(len(later) + 1)]:
            _apply(images, event)
        return images
    for event in later:  # any subset, some sectors torn
        roll = rng.random()
        if roll < 0.45:
            _apply(images, event)
        elif roll < 0.6 and event[0] == "write" and len(event[3]) > PIECE:
            _apply(images, event, part=rng.randrange(1, -(-len(event[3]) // PIECE)))
    return images


def write_state(images: dict, directory: str) -> None:
    """Lay a crash state's files out as a pool directory."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    for name, content in images.items():
        if content or name != "metadata.sqlite-wal":
            with open(os.path.join(directory, name), "wb") as file:
                file.write(content)
