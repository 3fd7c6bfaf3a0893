"""Fixtures of the integration tests that need a region's database but no Temporal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from regions.store import Store


@pytest.fixture
def region_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database for one region's store: a SQLite file, or a PostgreSQL schema of
    this test's own in the run's database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/region.db"
    postgres: str = request.getfixturevalue("postgres_database")
    schema = f"r{uuid.uuid4().hex[:10]}"
    engine = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{postgres}?options=-csearch_path%3D{schema}"


@pytest.fixture
def eu_west_store(region_url: str) -> Iterator[Store]:
    """eu-west's store in an empty database, migrated to the newest schema."""
    opened = Store("eu-west", region_url)
    opened.create_schema()
    yield opened
    opened.dispose()
