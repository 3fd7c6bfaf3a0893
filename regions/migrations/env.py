"""Alembic's entry point. `Store.create_schema()` hands it a connection in a transaction of
its own; from the command line (`alembic -x region=NAME ...`) it opens that region's store
from the GEOSAGA_* settings."""

from __future__ import annotations

from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from regions.migrate import include_object


def render_item(type_: str, obj: object, _context: AutogenContext) -> str | Literal[False]:
    """Revisions spell SQLModel's string type as SQLAlchemy's, so they import no SQLModel."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        include_object=include_object,
        render_item=render_item,
        # SQLite alters a table by copying it; batch mode writes migrations that way.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line() -> None:
    from foundation.settings import Settings
    from regions.store import Store

    settings = Settings()
    region = context.get_x_argument(as_dictionary=True).get("region", settings.regions[0])
    store = Store(region, settings.database_url(region))
    try:
        with store.engine.begin() as connection:
            run(connection)
    finally:
        store.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    run_from_command_line()
