"""Schema migrations of a region's store: Alembic, run against the store's own engine.

Every process that opens a store (workers, the API, `geosaga dev`, tests) brings it to the
newest revision when it starts. Several may start at once against one database: the upgrade
runs in one transaction that first takes a lock (PostgreSQL: an advisory lock; SQLite: the
write lock, which every writer's `BEGIN IMMEDIATE` takes), so the first migrates and the others
then find nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Table, inspect, text
from sqlmodel import SQLModel

from regions import models

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision that matches the schema `create_all` made before migrations existed.
INITIAL_REVISION = "0001"
# pg_advisory_xact_lock key (any 64-bit number; this one is "geosaga" in ASCII).
_LOCK_KEY = 0x67656F73616761


def region_tables() -> dict[str, Table]:
    """The tables of `regions.models` by name: what the migrations own.

    A table another module puts on the shared `SQLModel.metadata` is not the migrations' to
    create or compare (the payment gateway keeps its tables on a metadata of its own).
    """
    tables: dict[str, Table] = {}
    for value in vars(models).values():
        if (
            isinstance(value, type)
            and issubclass(value, SQLModel)
            and value.__module__ == models.__name__
            and isinstance(getattr(value, "__table__", None), Table)
        ):
            table: Table = value.__table__  # type: ignore[attr-defined]
            tables[table.name] = table
    return tables


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's filter: region tables, and the indexes and constraints on them."""
    owned = region_tables()
    if type_ == "table":
        return name in owned
    table = getattr(obj, "table", None)
    return not isinstance(table, Table) or table.name in owned


def alembic_config(connection: Connection | None = None) -> Config:
    """The migrations' configuration; with a connection, env.py migrates through it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the store's schema lock until it ends: one process at a time
    changes the schema (PostgreSQL: an advisory lock; SQLite: the write lock)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        yield connection


def upgrade(engine: Engine) -> None:
    """`alembic upgrade head` under the schema lock, in one transaction. A store whose tables
    `create_all` made before migrations existed is stamped with the initial revision first."""
    with schema_lock(engine) as connection:
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "stock" in tables:
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
