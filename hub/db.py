"""One SQLite database served by one worker thread, so the event loop never blocks on disk."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction on an autocommit connection: all of the block, or none of it.

    (``with conn:`` alone does not begin one when ``isolation_level`` is None: every statement
    would then commit on its own.)
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """A WAL-mode SQLite file; every call runs on the same dedicated thread."""

    def __init__(self, path: Path, *, schema: str = "") -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"sqlite[{path.name}]"
        )
        self._conn: sqlite3.Connection | None = None
        self._schema = schema

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only power loss can undo
            # the last commits, and the gateway still holds anything not yet acknowledged.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if self._schema:
                conn.executescript(self._schema)
            self._conn = conn
        return self._conn

    def call_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the database thread and wait for it (for start-up and tools)."""
        return self._executor.submit(lambda: fn(self._open())).result()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._open()))

    def close(self) -> None:
        """Close the connection and stop the thread."""

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)
