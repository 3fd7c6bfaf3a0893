"""A region's store: one database per region, reached through SQLModel."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, create_engine

from foundation import sqlite
from foundation.settings import Settings
from regions import clock, migrate, views
from regions.catalog import regions
from regions.models import ClockState  # importing it registers every table on the metadata
from regions.unavailable import (
    StoreUnavailable,
    retried_if_disconnected,
    store_failure,
    unavailable,
)

# How long a request may wait on a store by default: to connect, and for the write lock.
TIMEOUT_SECONDS = 30.0


class Store:
    """Owns the engine of one region's database."""

    def __init__(self, region: str, url: str, *, timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self.region = region
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.engine = _create_engine(url, timeout_seconds)
        self._reader = self.engine.execution_options(**{sqlite.READ_ONLY: True})
        self._sessions = sessionmaker(self.engine, class_=Session, expire_on_commit=False)
        # A transaction's own events reach its region's views as it commits, in the same
        # transaction; only this store's sessions carry the listener.
        event.listen(self._sessions, "before_commit", views.apply_local)
        # SQLite has one writer at a time, and one that finds the lock taken sleeps in steps of
        # up to 100 ms; writers in this process queue on a mutex instead and start the moment
        # the lock is free. Other processes still meet the busy timeout.
        self._writer = threading.RLock() if self.is_sqlite else None
        # Counts this process's committed writes, so a relay reading the outbox wakes when
        # one lands instead of polling (writes from other processes are found by polling).
        self._written = threading.Condition()
        self._writes = 0

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @retried_if_disconnected
    def create_schema(self) -> None:
        """Brings the schema to the newest migration (regions/migrations, `alembic upgrade
        head`); safe when several processes open the same store at once, and tried again on a
        fresh connection when one is killed under it (on PostgreSQL the upgrade is one
        transaction, which the server rolls back)."""
        with self._unavailable_raised():
            migrate.upgrade(self.engine)
        # The clock row exists before any writer locks it, so concurrent first writes queue.
        # A process opening the store at the same moment may insert it first: that is fine.
        with suppress(IntegrityError), self._transaction(serialised=False) as session:
            if session.get(ClockState, self.region) is None:
                session.add(ClockState(region=self.region, wall_ms=0, logical=0))

    def transaction(self) -> AbstractContextManager[Session]:
        """A write transaction: commits when the block ends, rolls back on error. Writers of a
        region run one at a time, each reading what the one before committed (SQLite: the
        write lock, taken at BEGIN; PostgreSQL: the clock's row, locked first). Raises
        StoreUnavailable when the store cannot be reached or the wait passes the timeout."""
        return self._transaction(serialised=True)

    @contextmanager
    def _transaction(self, *, serialised: bool) -> Iterator[Session]:
        with (
            self._unavailable_raised(),
            self._queued(),
            self._sessions() as session,
            session.begin(),
        ):
            if serialised and not self.is_sqlite:
                # SQLite's BEGIN IMMEDIATE has taken the write lock already; PostgreSQL reads
                # at READ COMMITTED, so a writer queues on the clock's row before it reads.
                clock.hold(session, self.region)
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
        with (
            self._unavailable_raised(),
            self._sessions(bind=self._reader) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def _queued(self) -> Iterator[None]:
        """SQLite: this process's writers queue on the mutex, as long as the busy timeout."""
        if self._writer is None:
            yield
            return
        if not self._writer.acquire(timeout=self.timeout_seconds):
            raise StoreUnavailable(
                self.region, f"still locked by another writer after {self.timeout_seconds:g} s"
            )
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def _unavailable_raised(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if not store_failure(error):
                raise
            raise unavailable(self.region, error) from error

    def dispose(self) -> None:
        self.engine.dispose()


def open_stores(settings: Settings, *, create: bool = True) -> dict[str, Store]:
    stores = {
        region.name: Store(
            region.name, region.database_url, timeout_seconds=settings.store_timeout_seconds
        )
        for region in regions(settings)
    }
    if create:
        for store in stores.values():
            store.create_schema()
    return stores


def close_stores(stores: Mapping[str, Store]) -> None:
    for store in stores.values():
        store.dispose()


def _create_engine(url: str, timeout_seconds: float) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # A host that drops packets fails within the timeout, not the OS's minutes (a URL's
        # own connect_timeout wins).
        connect = (
            {}
            if "connect_timeout" in parsed.query
            else {"connect_timeout": _whole(timeout_seconds)}
        )
        engine = create_engine(
            url, pool_pre_ping=True, pool_timeout=timeout_seconds, connect_args=connect
        )
        event.listen(engine, "connect", functools.partial(_postgres_on_connect, timeout_seconds))
        return engine
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_timeout=timeout_seconds,
        connect_args={"check_same_thread": False, "timeout": timeout_seconds},
    )
    pragmas = ("synchronous=NORMAL", "foreign_keys=ON")
    event.listen(engine, "connect", functools.partial(sqlite.on_connect, timeout_seconds, pragmas))
    event.listen(engine, "begin", sqlite.on_begin)
    return engine


def _whole(seconds: float) -> int:
    return max(1, round(seconds))


def _postgres_on_connect(timeout_seconds: float, dbapi_connection: Any, _record: object) -> None:
    # A writer queued on the clock's row past the timeout gives up, as SQLite's busy timeout
    # makes one there (StoreUnavailable). Committed: a rolled-back transaction undoes a SET.
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = {round(timeout_seconds * 1000)}")
    dbapi_connection.commit()
