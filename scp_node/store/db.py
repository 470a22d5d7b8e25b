"""The SQLite index: one file, WAL journal, one connection per thread.

Each store module declares its own tables in a ``SCHEMA`` string and lists it in ``SCHEMAS`` below;
:class:`Database` creates them all (``CREATE TABLE IF NOT EXISTS``) when it opens the file.
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from scp_node.store.locks import LockFile

#: Longest wait for the writers' lock of :meth:`Database.transaction`, seconds.
WRITER_WAIT_S = 30.0

SCHEMAS: dict[str, str] = {}
#: Run after the schemas on every open, in registration order; each must be idempotent.
MIGRATIONS: dict[str, Callable[[sqlite3.Connection], None]] = {}
#: Store modules that declare tables.
STORE_MODULES: tuple[str, ...] = ("index", "jobs", "outbox")


def register_schema(name: str, ddl: str) -> None:
    """Called by each store module at import with its ``CREATE ... IF NOT EXISTS`` statements."""
    SCHEMAS[name] = ddl


def register_migration(name: str, migrate: Callable[[sqlite3.Connection], None]) -> None:
    """Called by a store module at import with an idempotent upgrade of an older index file."""
    MIGRATIONS[name] = migrate


class Database:
    """Thread-safe access to the index: each thread gets its own connection to the same file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer = threading.RLock()
        self._writer_file = LockFile(self.path.with_name(self.path.name + ".writer"))
        self._import_all_schemas()
        conn = self.connection()
        for ddl in SCHEMAS.values():
            conn.executescript(ddl)  # CREATE ... IF NOT EXISTS: idempotent
        for migrate in MIGRATIONS.values():
            migrate(conn)

    @staticmethod
    def _import_all_schemas() -> None:
        # Importing the modules registers their schemas.
        for name in STORE_MODULES:
            try:
                importlib.import_module(f"scp_node.store.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"scp_node.store.{name}":
                    raise

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; after a power loss the start-up
            # recovery re-indexes the (fsynced) spool: see scp_node.store.recovery.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error).

        Writers take turns on a lock of their own first (a thread lock, then a byte-range lock
        on ``<index>.writer`` shared by every receiving process, tried every 0.2 ms), where
        SQLite's busy handler would sleep 1, 2, 5, 10 ... ms between retries when several
        associations commit at once. The lock only orders writers: SQLite still guards the data,
        and after ``WRITER_WAIT_S`` a writer goes on without it (a stuck holder never hangs
        the others for longer than SQLite's own busy timeout would).

        ``durable``: this commit is flushed to disk (``synchronous=FULL``) before it returns,
        where the others survive a killed process but not a power loss."""
        with self._writer:
            held = self._writer_file.lock_within(0, WRITER_WAIT_S)
            try:
                conn = self.connection()
                if durable:
                    conn.execute("PRAGMA synchronous=FULL")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield conn
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    if durable:
                        conn.execute("PRAGMA synchronous=NORMAL")
            finally:
                if held:
                    self._writer_file.unlock(0)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
