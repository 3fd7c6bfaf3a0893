"""Driving orders through the HTTP API and checking the saga invariants afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlmodel import select
from temporalio.client import Client

from foundation.security import api_keys
from foundation.settings import Settings
from regions import clock
from regions.inventory import set_on_hand
from regions.models import Authorisation, Capture, Stock
from regions.money import to_minor
from regions.store import Store
from regions.values import AuthorisationStatus, SagaStatus
from workflows.contract import SagaState, Stage, workflow_id
from workflows.order_saga import OrderSaga

if TYPE_CHECKING:
    from tests.cluster import Cluster

StockLevels = dict[str, dict[str, int]]

# What the `settings` fixture configures as the API's key (GEOSAGA_API_KEYS).
TEST_API_KEY = "geosaga-test-key-0123456789"


def auth_headers(settings: Settings) -> dict[str, str]:
    """`Authorization: Bearer <key>` with a key these settings accept (the development key
    when they configure none)."""
    return {"Authorization": f"Bearer {api_keys(settings)[0]}"}


def stock(stores: Mapping[str, Store], levels: StockLevels) -> StockLevels:
    """Sets on-hand stock per region and SKU; returns the levels for the invariant check."""
    for region, skus in levels.items():
        for sku, on_hand in skus.items():
            set_on_hand(stores[region], sku, on_hand)
    return levels


def order(
    home_region: str = "us-east",
    lines: Iterable[tuple[str, int]] = (("SKU-1", 1),),
    token: str = "tok_ok",
    customer: str = "cust-1",
) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "home_region": home_region,
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "payment_token": token,
    }


def new_key() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def submit(api: httpx.AsyncClient, body: dict[str, Any], key: str | None = None) -> str:
    key = key or new_key()
    response = await api.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 202, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def outcome(client: Client, order_id: str, timeout: float = 60.0) -> SagaState:
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    return await handle.result(rpc_timeout=timedelta(seconds=timeout))


async def place(
    api: httpx.AsyncClient, client: Client, body: dict[str, Any], key: str | None = None
) -> SagaState:
    return await outcome(client, await submit(api, body, key))


async def until(
    client: Client, order_id: str, condition: Callable[[SagaState], bool], timeout: float = 30.0
) -> SagaState:
    """Polls the saga's state query until `condition` holds; returns that state."""
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    for _ in range(int(timeout / 0.05)):
        state = await handle.query(OrderSaga.state)
        if condition(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{order_id} never got there: {state}")


def on_hand(stores: Mapping[str, Store]) -> dict[str, dict[str, tuple[int, int]]]:
    """(on_hand, reserved) per region and SKU."""
    levels: dict[str, dict[str, tuple[int, int]]] = {}
    for region, store in stores.items():
        with store.reading() as session:
            levels[region] = {
                row.sku: (row.on_hand, row.reserved) for row in session.exec(select(Stock))
            }
    return levels


def assert_invariants(
    stores: Mapping[str, Store], initial: StockLevels, sagas: Iterable[SagaState]
) -> None:
    """What must hold once every saga has ended.

    Per region and SKU, on hand is the starting stock minus what completed orders committed
    and nothing stays reserved; captured money equals the completed orders' totals; no
    authorisation stays open.
    """
    sagas = list(sagas)
    assert all(s.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED) for s in sagas), [
        (s.order_id, s.status) for s in sagas
    ]
    committed: dict[tuple[str, str], int] = {}
    for saga in sagas:
        if saga.status == SagaStatus.COMPLETED:
            for allocation in saga.allocations:
                where = (allocation.region, allocation.sku)
                committed[where] = committed.get(where, 0) + allocation.quantity
    levels = on_hand(stores)
    for region, skus in levels.items():
        for sku, (have, reserved) in skus.items():
            start = initial.get(region, {}).get(sku, 0)
            assert have == start - committed.get((region, sku), 0), (region, sku, have, start)
            assert reserved == 0, (region, sku, reserved)
    expected_captured = sum(to_minor(s.total) for s in sagas if s.status == SagaStatus.COMPLETED)
    captured = 0
    for store in stores.values():
        with store.reading() as session:
            captured += sum(c.amount_minor for c in session.exec(select(Capture)))
            open_authorisations = session.exec(
                select(Authorisation).where(Authorisation.status == AuthorisationStatus.AUTHORISED)
            ).all()
        assert open_authorisations == [], [a.key for a in open_authorisations]
    assert captured == expected_captured


@contextmanager
def writers_held(store: Store) -> Iterator[None]:
    """Holds the region's writers until the block ends, as a writer in another process would
    (PostgreSQL: the clock's row, which every write transaction locks first; SQLite: the
    database's write lock)."""
    with store.transaction() as session:
        clock.hold(session, store.region)
        yield


async def stuck_release(
    api: httpx.AsyncClient, client: Client, stores: Mapping[str, Store], cluster: Cluster
) -> tuple[StockLevels, str]:
    """A split order cancelled while ap-south is down: its release there is stuck and the saga
    waits in needs_attention. Returns the stock set first and the order's id."""
    initial = stock(stores, {"us-east": {"SKU-2": 1}, "ap-south": {"SKU-2": 5}})
    order_id = await submit(api, order("us-east", [("SKU-2", 3)], token="tok_flaky"))
    await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)
    await cluster.stop("ap-south")
    await api.post(f"/orders/{order_id}/cancel")
    await until(client, order_id, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
    return initial, order_id
