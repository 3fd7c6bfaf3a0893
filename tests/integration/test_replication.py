"""Regions learn of each other's changes through relayed events and converge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import httpx
import pytest
import pytest_asyncio
from sqlmodel import select
from temporalio.client import Client

from geosaga.settings import Settings
from regions.models import OrderView, StockView
from regions.store import Store
from tests.cluster import Cluster
from tests.helpers import order, place, stock

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

T = TypeVar("T")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"replication_poll_seconds": 0.5})


@pytest_asyncio.fixture
async def cluster(
    client: Client, settings: Settings, stores: dict[str, Store]
) -> AsyncIterator[Cluster]:
    async with Cluster(client, settings, stores, replication=True) as running:
        yield running


async def converge(
    stores: dict[str, Store], read: Callable[[Store], T], expected: T, timeout: float = 30
) -> None:
    """Waits until every region's read model equals `expected`."""
    for _ in range(int(timeout / 0.1)):
        seen = {region: read(store) for region, store in stores.items()}
        if all(value == expected for value in seen.values()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"regions did not converge on {expected}: {seen}")


def order_views(store: Store) -> dict[str, tuple[str, str | None, list[str]]]:
    with store.reading() as session:
        return {
            v.order_id: (v.status, v.reason, json.loads(v.regions))
            for v in session.exec(select(OrderView))
        }


def stock_views(store: Store) -> dict[tuple[str, str], tuple[int, int]]:
    with store.reading() as session:
        return {(v.region, v.sku): (v.on_hand, v.reserved) for v in session.exec(select(StockView))}


async def test_every_region_sees_every_order_and_stock_level(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10, "SKU-2": 3}, "eu-west": {"SKU-2": 5}})
    split = await place(api, client, order("us-east", [("SKU-2", 6)]))
    declined = await place(api, client, order("eu-west", [("SKU-2", 1)], token="tok_decline"))

    await converge(
        stores,
        order_views,
        {
            split.order_id: ("completed", None, ["eu-west", "us-east"]),
            declined.order_id: ("compensated", "payment_declined", ["eu-west"]),
        },
    )
    await converge(
        stores,
        stock_views,
        {
            ("us-east", "SKU-1"): (10, 0),
            ("us-east", "SKU-2"): (0, 0),
            ("eu-west", "SKU-2"): (2, 0),
        },
    )
