"""A region's store that cannot be reached, keeps a request waiting past its timeout, or loses
its connection mid-transaction: the API answers a 503 naming the region, never a 500, and a
transaction cut short leaves nothing behind. Each test has a PostgreSQL database of its own,
so it can refuse connections and terminate backends without touching anyone else's."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, create_engine, text
from sqlmodel import col, select

from api.main import create_app
from foundation.settings import Settings
from regions.events import STOCK
from regions.models import DeadLetter, OutboxEvent, Stock
from regions.store import Store
from regions.unavailable import RECONNECT_PAUSES
from tests.conftest import POSTGRES_ADMIN_URL
from tests.helpers import TEST_API_KEY, auth_headers, writers_held

REGION = "eu-west"
WAIT_SECONDS = 60.0


@pytest.fixture
def store_timeout() -> float:
    """The stores' timeout: long enough that a test's kill comes first, unless it says."""
    return WAIT_SECONDS


@pytest.fixture
def own_database() -> Iterator[str]:
    name = f"geosaga_outage_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def admin() -> Iterator[Engine]:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def settings(
    backend: str, store_timeout: float, tmp_path: Path, request: pytest.FixtureRequest
) -> Settings:
    if backend == "sqlite":
        template = f"sqlite:///{tmp_path}/{{region}}.db"
    else:
        database = request.getfixturevalue("own_database")
        url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}"
        template = f"{url}?options=-csearch_path%3D{{region_id}}"
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for region in Settings().regions:
                connection.execute(text(f'CREATE SCHEMA "{region.replace("-", "_")}"'))
        engine.dispose()
    return Settings(
        data_dir=tmp_path,
        database_url_template=template,
        store_timeout_seconds=store_timeout,
        api_keys=(SecretStr(TEST_API_KEY),),
    )


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app without workers: these routes need only the region stores."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://geosaga.test",
            headers=auth_headers(settings),
        ) as http,
    ):
        yield http


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The region's store as another process sees it."""
    opened = Store(REGION, settings.database_url(REGION))
    yield opened
    opened.dispose()


async def set_stock(api: httpx.AsyncClient, sku: str, on_hand: int) -> httpx.Response:
    return await api.put(f"/regions/{REGION}/stock/{sku}", json={"on_hand": on_hand})


async def set_item(api: httpx.AsyncClient, customer: str, quantity: int) -> httpx.Response:
    return await api.put(
        f"/carts/{customer}/items/SKU-1", json={"quantity": quantity}, headers={"X-Region": REGION}
    )


def unavailable(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    detail: str = response.json()["detail"]
    assert f"the {REGION} store is unavailable" in detail
    return detail


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("store_timeout", [1.0])
async def test_a_store_locked_past_its_timeout_answers_503_naming_the_region(
    api: httpx.AsyncClient, store: Store
) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    with writers_held(store):
        item = await set_item(api, customer, 2)
        level = await set_stock(api, "SKU-1", 5)
        read = await api.get(f"/carts/{customer}", headers={"X-Region": REGION})

    unavailable(item)
    unavailable(level)
    assert read.status_code == 200  # readers never wait for writers
    assert (await set_item(api, customer, 2)).status_code == 200
    assert (await set_stock(api, "SKU-1", 5)).status_code == 200


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_an_unreachable_store_answers_503_until_it_returns(
    api: httpx.AsyncClient, admin: Engine, own_database: str
) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    assert (await set_item(api, customer, 2)).status_code == 200
    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{own_database}" ALLOW_CONNECTIONS false'))
        _terminate(connection, own_database)
        answers = [
            await set_item(api, customer, 3),
            await api.get(f"/carts/{customer}", headers={"X-Region": REGION}),
            await set_stock(api, "SKU-1", 5),
            await api.get(f"/regions/{REGION}/stock"),
        ]
        connection.execute(text(f'ALTER DATABASE "{own_database}" ALLOW_CONNECTIONS true'))

    for answer in answers:
        assert "not currently accepting connections" in unavailable(answer)
    again = await set_item(api, customer, 3)
    assert again.status_code == 200
    assert again.json()["items"] == [{"sku": "SKU-1", "quantity": 3}]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("kills", [1, len(RECONNECT_PAUSES) + 1])
async def test_a_connection_killed_mid_transaction_leaves_nothing_half_written(
    api: httpx.AsyncClient, store: Store, admin: Engine, own_database: str, kills: int
) -> None:
    """The stock write is stopped after it has written its row, its event and the clock, while
    it updates its region's stock view (the test holds that row), and its backend terminated:
    once, and the API tries again and succeeds; on every try, and it answers 503."""
    assert (await set_stock(api, "SKU-1", 5)).status_code == 200
    with store.engine.connect() as blocker:
        blocker.execute(
            text("SELECT 1 FROM stock_view WHERE region = :region AND sku = 'SKU-1' FOR UPDATE"),
            {"region": REGION},
        )
        answer = asyncio.create_task(set_stock(api, "SKU-1", 9))
        killed: set[int] = set()
        for _ in range(kills):
            pid = await _next_waiter(admin, own_database, killed)
            with admin.connect() as connection:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killed.add(pid)
        if kills == 1:
            await _next_waiter(admin, own_database, killed)  # the second try, queued
        blocker.rollback()
        response = await answer

    events = _stock_events(store, "SKU-1")
    with store.reading() as session:
        row = session.get(Stock, "SKU-1")
        letters = session.exec(select(DeadLetter)).all()
    assert row is not None
    assert letters == []
    if kills == 1:
        assert response.status_code == 200, response.text
        assert row.on_hand == 9
        assert [e["cause"] for e in events] == ["adjusted from 0", "adjusted from 5"]
    else:
        assert "terminating connection" in unavailable(response)
        assert row.on_hand == 5
        assert [e["cause"] for e in events] == ["adjusted from 0"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_cart_edit_killed_while_it_queues_is_made_once(
    api: httpx.AsyncClient, store: Store, admin: Engine, own_database: str
) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    with writers_held(store):
        answer = asyncio.create_task(set_item(api, customer, 4))
        pid = await _next_waiter(admin, own_database, set())
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await _next_waiter(admin, own_database, {pid})
    response = await answer

    assert response.status_code == 200, response.text
    assert response.json()["items"] == [{"sku": "SKU-1", "quantity": 4}]
    with store.reading() as session:
        made = session.exec(select(OutboxEvent).where(OutboxEvent.aggregate_id == customer)).all()
    assert len(made) == 1


async def _next_waiter(admin: Engine, database: str, known: set[int]) -> int:
    """A backend of `database` waiting for a lock, other than the `known` ones."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        with admin.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = :database AND wait_event_type = 'Lock'"
                ),
                {"database": database},
            ).scalars()
            waiting = set(pids) - known
        if waiting:
            return int(waiting.pop())
        assert time.monotonic() < deadline, "no writer queued"
        await asyncio.sleep(0.02)


def _terminate(connection: Connection, database: str) -> None:
    connection.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :database AND pid <> pg_backend_pid()"
        ),
        {"database": database},
    )


def _stock_events(store: Store, sku: str) -> list[dict[str, object]]:
    with store.reading() as session:
        rows = session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.aggregate_type == STOCK, OutboxEvent.aggregate_id == sku)
            .order_by(col(OutboxEvent.sequence))
        ).all()
    return [json.loads(row.payload) for row in rows]
