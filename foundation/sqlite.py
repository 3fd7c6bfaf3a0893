"""SQLite as geosaga's stores use it (the regions' and the payment gateway's): WAL, so readers
never block the writer; writers that take the write lock at BEGIN, so two of them queue instead
of deadlocking when both upgrade from a read."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

# The execution option that marks an engine's read-only connections: they BEGIN without a lock.
READ_ONLY = "geosaga_read_only"
# How long a new file's switch to WAL keeps trying while other processes make theirs.
_WAL_SWITCH_SECONDS = 30


def on_connect(
    busy_timeout_seconds: float, pragmas: Iterable[str], dbapi_connection: Any, _record: object
) -> None:
    """The engine's `connect` hook (bind the first two with functools.partial)."""
    # Transactions begin in `on_begin`; pysqlite's own begins too late to take the lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout_seconds * 1000)}")
    use_wal(cursor)
    for pragma in pragmas:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def on_begin(connection: Any) -> None:
    """The engine's `begin` hook: writers take the lock up front, readers none."""
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def use_wal(cursor: sqlite3.Cursor) -> None:
    """Switches a new database file to WAL. Processes that open it together race for the
    switch, and SQLite answers a loser "database is locked" at once, busy timeout or not (one
    run in 25 of the eight-process migration test did): it tries again."""
    deadline = time.monotonic() + _WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
