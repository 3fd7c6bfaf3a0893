"""Alembic migrations of a region's store, on SQLite and on the local PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import Session, SQLModel, select

from gateway.models import GatewayModel
from regions import migrate
from regions.models import ClockState, Stock
from regions.store import Store


@pytest.fixture
def store(region_url: str) -> Iterator[Store]:
    opened = Store("us-east", region_url)
    yield opened
    opened.dispose()


def head() -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


def differences(store: Store) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"include_object": migrate.include_object, "compare_type": True},
        )
        return list(compare_metadata(context, SQLModel.metadata))


def snapshot(store: Store) -> dict[str, Any]:
    """Tables, columns, indexes and constraints as the database reports them."""
    inspector = inspect(store.engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            sorted(str(i) for i in inspector.get_indexes(table)),
            sorted(str(u) for u in inspector.get_unique_constraints(table)),
            inspector.get_pk_constraint(table)["constrained_columns"],
        )
        for table in sorted(inspector.get_table_names())
    }


def test_the_revisions_are_one_line_from_the_initial_one() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    line = [revision.revision for revision in script.walk_revisions()]
    assert line[-1] == migrate.INITIAL_REVISION
    assert line[0] == head()


def test_migrating_an_empty_database_gives_exactly_the_models_schema(store: Store) -> None:
    store.create_schema()

    assert differences(store) == []
    tables = set(inspect(store.engine).get_table_names())
    assert tables == set(migrate.region_tables()) | {"alembic_version"}
    assert migrate.current_revision(store.engine) == head()


def test_upgrading_twice_changes_nothing(store: Store) -> None:
    store.create_schema()
    before = snapshot(store)

    store.create_schema()

    assert snapshot(store) == before
    assert migrate.current_revision(store.engine) == head()
    with store.reading() as session:
        assert len(session.exec(select(ClockState)).all()) == 1


def test_a_store_made_before_migrations_is_adopted_with_its_rows(store: Store) -> None:
    SQLModel.metadata.create_all(store.engine, tables=list(migrate.region_tables().values()))
    with store.transaction() as session:
        session.add(Stock(sku="SKU-1", on_hand=7, reserved=0))

    store.create_schema()

    assert migrate.current_revision(store.engine) == head()
    assert differences(store) == []
    with store.reading() as session:
        kept = session.get(Stock, "SKU-1")
    assert kept is not None
    assert kept.on_hand == 7


def test_processes_opening_one_store_at_once_migrate_it_once(region_url: str) -> None:
    """Workers and API replicas start together against one database; each opens the store
    (and makes sure of the clock row) without tripping over the others."""
    stores = [Store("us-east", region_url) for _ in range(8)]
    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(Store.create_schema, stores))
        assert migrate.current_revision(stores[0].engine) == head()
        assert differences(stores[0]) == []
        with stores[0].reading() as session:
            assert len(session.exec(select(ClockState)).all()) == 1
    finally:
        for opened in stores:
            opened.dispose()


def test_a_clock_row_another_process_made_meanwhile_is_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_schema()
    with store.reading() as session:
        clock = session.get(ClockState, store.region)
    look = Session.get

    def too_early(self: Session, entity: Any, ident: Any, **options: Any) -> Any:
        """What a process sees when it looks just before another one inserts the row."""
        return None if entity is ClockState else look(self, entity, ident, **options)

    monkeypatch.setattr(Session, "get", too_early)
    store.create_schema()
    monkeypatch.undo()

    with store.reading() as session:
        assert session.exec(select(ClockState)).all() == [clock]


def test_the_gateways_tables_are_not_the_region_stores(store: Store) -> None:
    """The payment gateway is another system: its tables live on a metadata of their own, so
    a region store's migrations neither make them nor see them missing."""
    store.create_schema()

    assert set(GatewayModel.metadata.tables).isdisjoint(SQLModel.metadata.tables)
    assert set(GatewayModel.metadata.tables).isdisjoint(inspect(store.engine).get_table_names())
    assert differences(store) == []
