"""The pool's metadata file: SQLite as the transaction manager.

Everything the engine changes in memory since the last commit is written here in one
SQLite transaction (WAL journal), so the file always holds one complete, consistent
generation of the metadata: the last committed one. SQLite never syncs (synchronous=OFF,
no automatic checkpoint): ``sync`` makes the log durable through the I/O seam after each
commit, and checkpoints (then syncs the database file) when the log has grown, so every
durability decision goes through ``disk.Disk``. Closing keeps the log (``sqlitelog``): a
pool opened for a moment costs no checkpoint, and one opened only to read writes nothing.

Invariants kept here:
- a metadata file is opened for writing only once ``metafile.validate`` accepted it, and
  every SQLite error leaves as an engine error naming the file (``metafile.engine_error``);
- a new metadata file appears under its name only once complete (made aside, renamed);
- the log is checkpointed only after it is synced, and the database file is synced before
  the next transaction may restart the log, so no committed page exists only in memory.
"""

import contextlib
import errno
import functools
import os
import sqlite3
import threading
import time

from evs_driver import exception
from evs_driver.rowstore import directory
from evs_driver.rowstore.disk import REAL, Disk
from evs_driver.rowstore.geometry import Geometry
from evs_driver.rowstore.metafile import engine_error, validate
from evs_driver.sqlitelog import close_keeping_log

# 2: overlays; 3: the data file's identity; 4: an overlay's base may be an overlay (code
# before 4 would read such a chain wrongly). Older pools are upgraded when opened.
FORMAT_VERSION = 4

#: Checkpoint once the log holds this much (SQLite's own default is 1000 pages).
CHECKPOINT_BYTES = 8 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pool (key TEXT PRIMARY KEY, value NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('volume', 'snapshot')),
    size INTEGER NOT NULL,
    root INTEGER NOT NULL,
    origin INTEGER,
    mapped INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, level INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS refcounts (
    space TEXT NOT NULL, page INTEGER NOT NULL, counts BLOB NOT NULL, PRIMARY KEY (space, page)
);
CREATE TABLE IF NOT EXISTS garbage (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS overlays (
    chunk INTEGER PRIMARY KEY, base INTEGER NOT NULL, valid INTEGER NOT NULL
);
"""

DEVICE_COLUMNS = "id, name, kind, size, root, origin, mapped, created_at"


def new_pool_settings(geometry: Geometry, pool_id: str) -> dict:
    """The settings a new, empty pool starts with."""
    return {
        "chunk_size": geometry.chunk_size,
        "node_bits": geometry.node_bits,
        "capacity_chunks": geometry.capacity_chunks,
        "data_high_water": 0,
        "node_high_water": 0,
        "next_device_id": 1,
        "clean": 1,
        "created_at": time.time(),
        "pool_id": pool_id,
    }


def _mapped(method):
    """Run a read of the metadata with SQLite's errors turned into engine errors."""

    @functools.wraps(method)
    def mapped(self, *args):
        with self.lock, self.errors():
            return method(self, *args)

    return mapped


class MetaStore:
    """One SQLite connection, used by one thread at a time (``lock``).

    A commit stores and syncs outside the pool's lock while writers read nodes under it;
    every other use happens under the pool's lock with no commit storing."""

    def __init__(self, path: str, pool_path: str, page_size: int | None = None, disk: Disk = REAL):
        """Open a metadata file that ``validate`` accepted (``page_size``: a new, empty one)."""
        self.path = path
        self.pool_path = pool_path
        self._disk = disk
        #: The log's file is made by this open: its name in the directory is not durable.
        self._new_log = not os.path.exists(path + "-wal")
        self._unsynced = False  # a commit is stored but its log not synced yet
        self.lock = threading.RLock()
        with self.errors():
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if page_size:
                self.db.execute(f"PRAGMA page_size={int(page_size)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute("PRAGMA wal_autocheckpoint=0")

    @classmethod
    def open(cls, path: str, pool_path: str, disk: Disk = REAL) -> "MetaStore":
        """Check the file without writing it, then open it for writing."""
        validate(path, pool_path)
        return cls(path, pool_path, disk=disk)

    @classmethod
    def create(cls, path: str, pool_path: str, settings: dict, disk: Disk = REAL) -> None:
        """Write a new metadata file holding the schema and ``settings``."""
        partial = path + ".new"
        for stale in (partial, *(partial + side for side in ("-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        os.close(directory.create_private_file(partial))
        meta = cls(partial, pool_path, page_size=8192, disk=disk)
        try:
            with meta.transaction():
                meta._create_tables()
                meta.db.executemany(
                    "INSERT INTO pool (key, value) VALUES (?, ?)",
                    [("format_version", FORMAT_VERSION), *settings.items()],
                )
            meta.checkpoint()  # the log goes with the close: it is named for the partial file
        finally:
            # SQLite syncs the database file itself, should our checkpoint have failed.
            with contextlib.suppress(sqlite3.Error):
                meta.db.execute("PRAGMA synchronous=FULL")
            meta.db.close()
        os.rename(partial, path)
        directory.sync_directory(pool_path)

    def close(self) -> None:
        """Close, keeping the log: its commits are durable since their ``sync``."""
        try:
            if self._unsynced:
                self.sync()
        finally:
            close_keeping_log(self.db, self.path)

    @property
    def unsynced(self) -> bool:
        """True when a stored transaction is not durable yet (its ``sync`` failed)."""
        return self._unsynced

    def sync(self) -> None:
        """Make every committed transaction durable; checkpoint when the log is large."""
        with self.lock:
            self._sync_file(self.path + "-wal")
            if self._new_log:  # and its name in the directory
                self._sync_file(self.pool_path)
                self._new_log = False
            self._unsynced = False
            try:
                log_bytes = os.path.getsize(self.path + "-wal")
            except FileNotFoundError:
                return
            if log_bytes >= CHECKPOINT_BYTES:
                self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the synced log into the database file and sync it, then empty the log.

        The empty log is made durable before SQLite writes the log again: with
        synchronous=OFF SQLite does not sync the header of a restarted log, and a power
        cut could then leave the old header with a prefix of the old frames, older than
        the database file they were copied into (SQLite's ticket ff5be73dee).
        """
        if not os.path.exists(self.path + "-wal"):
            return
        if self._unsynced:
            self._sync_file(self.path + "-wal")
            self._unsynced = False
        with self.errors():
            _, logged, copied = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self._sync_file(self.path)
        if logged != copied:  # a reader holds old frames: the log cannot restart yet
            return
        with self.errors():  # everything is copied and durable: this only empties the log
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self._sync_file(self.path + "-wal")

    def _sync_file(self, path: str) -> None:
        try:
            self._disk.sync_path(path)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise exception.FileSystemFull(
                    pool=self.pool_path, detail=f"metadata file {path}: {err.strerror}"
                ) from err
            raise exception.EVSError(
                f"I/O error on {path} of pool {self.pool_path}: {err}"
            ) from err

    def upgrade(self, settings: dict) -> None:
        """Bring an older pool's schema up to this version, storing ``settings`` with it."""
        with self.transaction():
            self._create_tables()
            self.db.executemany(
                "INSERT OR REPLACE INTO pool (key, value) VALUES (?, ?)",
                [*settings.items(), ("format_version", FORMAT_VERSION)],
            )
        self.sync()

    @_mapped
    def format_version(self) -> int:
        """The stored format; ``InvalidPool`` when it is newer than this code."""
        version = int(self.settings().get("format_version", 1))
        if version > FORMAT_VERSION:
            raise exception.InvalidPool(
                path=self.pool_path,
                reason=f"its format version {version} is newer than this evs_driver "
                f"supports ({FORMAT_VERSION})",
            )
        return version

    def _create_tables(self) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def transaction(self):
        return _Transaction(self)

    @contextlib.contextmanager
    def errors(self):
        """Turn SQLite's errors into engine errors that name this file."""
        try:
            yield
        except sqlite3.Error as err:
            raise engine_error(err, self.path, self.pool_path) from err

    # -- reads ----------------------------------------------------------------------
    @_mapped
    def settings(self) -> dict:
        return dict(self.db.execute("SELECT key, value FROM pool"))

    @_mapped
    def devices(self) -> list[tuple]:
        return self.db.execute(f"SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id").fetchall()

    @_mapped
    def pages(self, space: str) -> dict[int, bytes]:
        rows = self.db.execute("SELECT page, counts FROM refcounts WHERE space = ?", (space,))
        return dict(rows)

    @_mapped
    def overlays(self) -> dict[int, tuple[int, int]]:
        rows = self.db.execute("SELECT chunk, base, valid FROM overlays")
        return {chunk: (base, valid) for chunk, base, valid in rows}

    @_mapped
    def garbage(self) -> set[int]:
        return {row[0] for row in self.db.execute("SELECT id FROM garbage")}

    @_mapped
    def node(self, node_id: int) -> tuple[int, bytes] | None:
        return self.db.execute("SELECT level, body FROM nodes WHERE id = ?", (node_id,)).fetchone()

    @_mapped
    def node_ids(self) -> list[int]:
        return [row[0] for row in self.db.execute("SELECT id FROM nodes")]

    @_mapped
    def size_bytes(self) -> int:
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return page_size * self.db.execute("PRAGMA page_count").fetchone()[0]

    # -- the commit ---------------------------------------------------------------------
    def save(self, change: "Change") -> None:
        """Write one generation of changes atomically (durable once ``sync`` returns)."""
        with self.lock, self.transaction():
            db = self.db
            db.executemany("DELETE FROM nodes WHERE id = ?", ((i,) for i in change.deleted_nodes))
            db.executemany("DELETE FROM garbage WHERE id = ?", ((i,) for i in change.deleted_nodes))
            db.executemany(
                "INSERT OR REPLACE INTO nodes (id, level, body) VALUES (?, ?, ?)", change.nodes
            )
            db.executemany(
                "INSERT OR IGNORE INTO garbage (id) VALUES (?)", ((i,) for i in change.garbage)
            )
            db.executemany(
                "INSERT OR REPLACE INTO refcounts (space, page, counts) VALUES (?, ?, ?)",
                change.pages,
            )
            db.executemany(
                "DELETE FROM overlays WHERE chunk = ?", ((c,) for c in change.gone_overlays)
            )
            db.executemany(
                "INSERT OR REPLACE INTO overlays (chunk, base, valid) VALUES (?, ?, ?)",
                change.overlays,
            )
            db.executemany(
                "DELETE FROM devices WHERE id = ?", ((i,) for i in change.deleted_devices)
            )
            db.executemany(
                f"INSERT OR REPLACE INTO devices ({DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                change.devices,
            )
            db.executemany(
                "INSERT OR REPLACE INTO pool (key, value) VALUES (?, ?)", change.settings.items()
            )


class Change:
    """The rows one commit writes."""

    def __init__(self):
        self.nodes: list[tuple[int, int, bytes]] = []
        self.deleted_nodes: list[int] = []
        self.garbage: list[int] = []
        self.pages: list[tuple[str, int, bytes]] = []
        self.overlays: list[tuple[int, int, int]] = []
        self.gone_overlays: list[int] = []
        self.devices: list[tuple] = []
        self.deleted_devices: list[int] = []
        self.settings: dict = {}


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; on any failure nothing of it is stored."""

    def __init__(self, meta: MetaStore):
        self.meta = meta

    def __enter__(self):
        with self.meta.errors():
            self.meta.db.execute("BEGIN IMMEDIATE")
        return self.meta.db

    def __exit__(self, exc_type, exc, tb):
        db = self.meta.db
        if exc_type is None:
            try:
                with self.meta.errors():
                    db.execute("COMMIT")
                self.meta._unsynced = True
                return False
            except BaseException:
                self._roll_back()
                raise
        self._roll_back()
        if isinstance(exc, sqlite3.Error):
            raise engine_error(exc, self.meta.path, self.meta.pool_path) from exc
        return False

    def _roll_back(self) -> None:
        # SQLite may have rolled back already (a full disk does that), and a failing
        # rollback must not hide the error that caused it.
        if self.meta.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.meta.db.execute("ROLLBACK")
