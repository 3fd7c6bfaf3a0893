"""The gateway's database: SQLite by default, any SQLAlchemy URL (PostgreSQL in production).

Writers take turns where it matters: on SQLite every write transaction takes the database's
write lock up front (`BEGIN IMMEDIATE`); on PostgreSQL rows are locked with `SELECT … FOR
UPDATE` and the ledger's appends with an advisory lock, so that its `seq` order is its commit
order and a reader paging with `after` never skips an entry that commits late.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from foundation import sqlite
from gateway.models import GatewayModel

# pg_advisory_xact_lock keys ("gwschema" and "gwledger" in ASCII).
_SCHEMA_LOCK = 0x6777736368656D61
_LEDGER_LOCK = 0x67776C6564676572
_BUSY_SECONDS = 30


class GatewayStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self._reader = self.engine.execution_options(**{sqlite.READ_ONLY: True})
        # SQLite has one writer at a time: this process's writers queue here instead of
        # sleeping in the busy handler (other processes still meet the busy timeout).
        self._writer: AbstractContextManager[Any] = (
            threading.Lock() if self.is_sqlite else nullcontext()
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def create_tables(self) -> None:
        """Creates what is missing, one process at a time: gateways starting together on one
        database find the tables the first one made."""
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK}
                )
            GatewayModel.metadata.create_all(connection)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commits when the block ends, rolls back on error."""
        with (
            self._writer,
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def lock_ledger(session: Session) -> None:
    """Held until the transaction ends: ledger appends commit in `seq` order (PostgreSQL;
    SQLite's writers are serial already)."""
    connection: Connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LEDGER_LOCK})


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    # Requests run on a pool of threads (FastAPI's): enough connections for them.
    pool: dict[str, Any] = {"pool_size": 10, "max_overflow": 40}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": _BUSY_SECONDS}, **pool
    )
    pragmas = ("synchronous=NORMAL",)
    event.listen(engine, "connect", functools.partial(sqlite.on_connect, _BUSY_SECONDS, pragmas))
    event.listen(engine, "begin", sqlite.on_begin)
    return engine
