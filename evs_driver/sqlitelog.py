"""SQLite in WAL mode: syncing the log after commits, and closing without the checkpoint
of the last connection.

``LogSync`` makes committed transactions durable as ``synchronous=FULL`` does (the log
after each commit, the directory once when this open made the log), for a connection in
``synchronous=NORMAL``, which still syncs around checkpoints and the header of a restarted
log; the syncs are then this module's own, which tests can count.

When the last connection to a WAL database closes, SQLite copies the log into the database
file and syncs both, then deletes the log: two syncs for every process that touched the
database, however little it wrote. A connection does not do that while another one holds
the database (every connection in WAL mode keeps a shared lock on it), and a read-only
connection never checkpoints. So ``close_keeping_log`` closes behind a read-only
connection: the log stays beside the database with every committed transaction in it,
durable as its commits made it, and the next open reads it (SQLite's own checkpoints,
or the caller's, fold it into the database file once it has grown).
"""

import contextlib
import os
import sqlite3
import urllib.parse


class LogSync:
    """Syncs the log of the WAL database at ``path``; make it before the first connection."""

    def __init__(self, path: str):
        self._path = path + "-wal"
        self._new = not os.path.exists(self._path)
        self._fd: int | None = None

    def sync(self) -> None:
        """Make what is committed in the log durable (``OSError`` when it cannot be).

        The log stays one file while a connection is open: SQLite removes it only when the
        last connection closes, and restarts it in place."""
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        os.fsync(self._fd)
        if self._new:
            directory = os.open(os.path.dirname(self._path) or ".", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._new = False

    def close(self) -> None:
        """Let go of the log (before its connection closes)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def close_keeping_log(db: sqlite3.Connection, path: str) -> None:
    """Close ``db`` (a WAL connection to the database at ``path``) and leave its log.

    When no read-only connection can be opened, SQLite checkpoints as it closes, after
    ``synchronous=FULL`` so that it syncs the database file before it deletes the log.
    """
    keeper = None
    try:
        keeper = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True)
        keeper.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error:
        if keeper is not None:
            keeper.close()
            keeper = None
        with contextlib.suppress(sqlite3.Error):
            db.execute("PRAGMA synchronous=FULL")
    try:
        db.close()
    finally:
        if keeper is not None:
            keeper.close()
