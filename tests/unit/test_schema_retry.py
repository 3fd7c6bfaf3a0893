"""Opening a store survives a connection killed under its migration: the API restarted while
PostgreSQL backends were being terminated exited at startup (found by
`geosaga torture --seed 111 --minutes 5 --store postgres`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError

from regions import migrate
from regions.store import Store
from regions.unavailable import StoreUnavailable


def _killed(statement: str) -> OperationalError:
    error = OperationalError(
        statement,
        {},
        psycopg.OperationalError("terminating connection due to administrator command"),
    )
    error.connection_invalidated = True
    return error


def test_a_migration_whose_connection_was_killed_is_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade = migrate.upgrade
    calls: list[Engine] = []

    def killed_once(engine: Engine) -> None:
        calls.append(engine)
        if len(calls) == 1:
            raise _killed("SELECT version_num FROM alembic_version")
        upgrade(engine)

    monkeypatch.setattr(migrate, "upgrade", killed_once)
    store = Store("us-east", f"sqlite:///{tmp_path}/us-east.db")
    try:
        store.create_schema()
        tables = inspect(store.engine).get_table_names()
    finally:
        store.dispose()

    assert len(calls) == 2
    assert "alembic_version" in tables
    assert "reservation" in tables


def test_a_store_that_is_down_is_reported_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Engine] = []

    def down(engine: Engine) -> None:
        calls.append(engine)
        raise OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))

    monkeypatch.setattr(migrate, "upgrade", down)
    store = Store("us-east", f"sqlite:///{tmp_path}/us-east.db")
    try:
        with pytest.raises(StoreUnavailable, match="connection refused"):
            store.create_schema()
    finally:
        store.dispose()

    assert len(calls) == 1
