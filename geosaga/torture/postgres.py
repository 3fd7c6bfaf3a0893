"""The PostgreSQL side of a torture run: its regions' databases, created and dropped on the
local server, and the backends the nemesis terminates mid-transaction."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# Where the harness creates (and drops) the regions' databases.
ADMIN_URL = os.environ.get(
    "GEOSAGA_TORTURE_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_TERMINATE = text(
    "SELECT count(*) FROM ("
    " SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity"
    " WHERE datname = :database AND pid <> pg_backend_pid()"
    " AND state IS DISTINCT FROM 'idle'"
    ") AS terminated WHERE done"
)


def server() -> tuple[str, int]:
    """The server's address, which the workers' proxies forward to."""
    url = make_url(ADMIN_URL)
    return url.host or "127.0.0.1", url.port or 5432


def database_url(database: str, *, port: int | None = None) -> str:
    """The URL of one of the run's databases; with `port`, through a proxy on this host."""
    url = make_url(ADMIN_URL).set(database=database)
    if port is not None:
        url = url.set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


def admin() -> Engine:
    return create_engine(ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def create_databases(seed: int, regions: Iterable[str]) -> dict[str, str]:
    """A database per region, `torture_<seed>_<region>_<random>`; region → its name."""
    created: dict[str, str] = {}
    engine = admin()
    try:
        with engine.connect() as connection:
            for region in regions:
                name = f"torture_{seed}_{region.replace('-', '_')}_{secrets.token_hex(3)}"
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                created[region] = name
    finally:
        engine.dispose()
    return created


def drop_databases(names: Iterable[str]) -> None:
    engine = admin()
    try:
        with engine.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def terminate_busy_backends(engine: Engine, database: str) -> int:
    """pg_terminate_backend on every backend of `database` not idle (in a query or inside a
    transaction); returns how many were terminated."""
    with contextlib.closing(engine.connect()) as connection:
        return int(connection.execute(_TERMINATE, {"database": database}).scalar_one())
