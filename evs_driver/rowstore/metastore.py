"""The pool's metadata file: SQLite as the transaction manager.

Everything the engine changes in memory since the last commit is written here in one
SQLite transaction (WAL journal, synchronous=FULL), so the file always holds one complete,
consistent generation of the metadata: the last committed one.
"""

import sqlite3

from evs_driver import exception

FORMAT_VERSION = 2  # 2: overlays (pools of version 1 are upgraded when opened)

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


class MetaStore:
    """One SQLite connection; callers serialize access (the pool's lock)."""

    def __init__(self, path: str):
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA page_size=8192")

    def close(self) -> None:
        self.db.close()

    def create_schema(self, settings: dict) -> None:
        with self.transaction():
            self._create_tables()
            self.db.executemany(
                "INSERT INTO pool (key, value) VALUES (?, ?)",
                [("format_version", FORMAT_VERSION), *settings.items()],
            )

    def upgrade(self, path: str) -> None:
        """Bring an older pool's schema up to this version; refuse a newer one."""
        version = int(self.settings().get("format_version", 1))
        if version > FORMAT_VERSION:
            raise exception.InvalidPool(
                path=path,
                reason=f"its format version {version} is newer than this evs_driver "
                f"supports ({FORMAT_VERSION})",
            )
        if version < FORMAT_VERSION:
            with self.transaction():
                self._create_tables()
                self.db.execute(
                    "INSERT OR REPLACE INTO pool (key, value) VALUES ('format_version', ?)",
                    (FORMAT_VERSION,),
                )

    def _create_tables(self) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def transaction(self):
        return _Transaction(self.db)

    # -- reads ----------------------------------------------------------------------
    def settings(self) -> dict:
        return dict(self.db.execute("SELECT key, value FROM pool"))

    def devices(self) -> list[tuple]:
        return self.db.execute(f"SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id").fetchall()

    def pages(self, space: str) -> dict[int, bytes]:
        rows = self.db.execute("SELECT page, counts FROM refcounts WHERE space = ?", (space,))
        return dict(rows)

    def overlays(self) -> dict[int, tuple[int, int]]:
        rows = self.db.execute("SELECT chunk, base, valid FROM overlays")
        return {chunk: (base, valid) for chunk, base, valid in rows}

    def garbage(self) -> set[int]:
        return {row[0] for row in self.db.execute("SELECT id FROM garbage")}

    def node(self, node_id: int) -> tuple[int, bytes] | None:
        return self.db.execute("SELECT level, body FROM nodes WHERE id = ?", (node_id,)).fetchone()

    def node_ids(self) -> list[int]:
        return [row[0] for row in self.db.execute("SELECT id FROM nodes")]

    def size_bytes(self) -> int:
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return page_size * self.db.execute("PRAGMA page_count").fetchone()[0]

    # -- the commit ---------------------------------------------------------------------
    def save(self, change: "Change") -> None:
        """Write one generation of changes atomically."""
        with self.transaction():
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
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
