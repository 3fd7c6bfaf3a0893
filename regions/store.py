"""A region's store: one database per region, reached through SQLModel."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine

from geosaga.settings import Settings
from regions import migrate
from regions.catalog import regions
from regions.models import ClockState  # importing it registers every table on the metadata

_READ_ONLY = "geosaga_read_only"


class Store:
    """Owns the engine of one region's database."""

    def __init__(self, region: str, url: str) -> None:
        self.region = region
        self.url = url
        self.engine = _create_engine(url)
        self._reader = self.engine.execution_options(**{_READ_ONLY: True})
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # steps of up to 100 ms before it looks again. Writers in this process queue on a
        # mutex instead and start the moment the lock is free (BENCHMARKS.md: activities ran
        # 4x faster under load). Other processes still meet the busy timeout.
        self._writer = threading.RLock() if self.is_sqlite else nullcontext()
        # Counts this process's committed writes, so a relay reading the outbox wakes when
        # one lands instead of polling (writes from other processes are found by polling).
        self._written = threading.Condition()
        self._writes = 0

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def create_schema(self) -> None:
        """Brings the schema to the newest migration (regions/migrations, `alembic upgrade
        head`); safe when several processes open the same store at once."""
        migrate.upgrade(self.engine)
        # The clock row exists before any writer locks it, so concurrent first writes queue.
        # A process opening the store at the same moment may insert it first: that is fine.
        with suppress(IntegrityError), self.transaction() as session:
            if session.get(ClockState, self.region) is None:
                session.add(ClockState(region=self.region, wall_ms=0, logical=0))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commits when the block ends, rolls back on error."""
        with (
            self._writer,
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
        with self._written:
            self._writes += 1
            self._written.notify_all()

    @property
    def writes(self) -> int:
        """How many write transactions this process has committed here."""
        return self._writes

    def wait_for_write(self, after: int, timeout: float) -> bool:
        """Waits until this process commits a write beyond `after`, or `timeout` passes."""
        with self._written:
            return self._written.wait_for(lambda: self._writes > after, timeout)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read transaction that never blocks writers (SQLite readers use the WAL snapshot)."""
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def open_stores(settings: Settings, *, create: bool = True) -> dict[str, Store]:
    stores = {region.name: Store(region.name, region.database_url) for region in regions(settings)}
    if create:
        for store in stores.values():
            store.create_schema()
    return stores


# How long a SQLite connection waits for another one's lock before it gives up.
_BUSY_SECONDS = 30


def close_stores(stores: Mapping[str, Store]) -> None:
    for store in stores.values():
        store.dispose()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": _BUSY_SECONDS})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: object) -> None:
    # Hand transaction control to the `begin` hook below; pysqlite's own is too late to lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_SECONDS * 1000}")
    _use_wal(cursor)
    for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switches a new database file to WAL. Processes that open it together race for the
    switch, and SQLite answers a loser "database is locked" at once, busy timeout or not (one
    run in 25 of the eight-process migration test did): it tries again."""
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_on_begin(connection: Any) -> None:
    # Writers take the lock up front, so two writers queue instead of deadlocking on upgrade.
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
