"""The global cart: edited in any region, merged everywhere, checked out where the customer is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from foundation.settings import Settings
from regions.store import Store
from tests.cluster import Cluster
from tests.helpers import new_key, outcome, stock

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
REGIONS = ("us-east", "eu-west", "ap-south")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"replication_poll_seconds": 0.5})


@pytest_asyncio.fixture
async def cluster(
    client: Client, settings: Settings, stores: dict[str, Store]
) -> AsyncIterator[Cluster]:
    async with Cluster(client, settings, stores, replication=True) as running:
        yield running


async def put(api: httpx.AsyncClient, region: str, customer: str, sku: str, quantity: int) -> None:
    response = await api.put(
        f"/carts/{customer}/items/{sku}", json={"quantity": quantity}, headers={"X-Region": region}
    )
    assert response.status_code == 200, response.text


async def cart(api: httpx.AsyncClient, region: str, customer: str) -> dict[str, int]:
    response = await api.get(f"/carts/{customer}", headers={"X-Region": region})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["region"] == region
    return {item["sku"]: item["quantity"] for item in body["items"]}


async def everywhere(
    api: httpx.AsyncClient,
    customer: str,
    expected: dict[str, int],
    regions: tuple[str, ...] = REGIONS,
) -> None:
    for _ in range(300):
        seen = {region: await cart(api, region, customer) for region in regions}
        if all(items == expected for items in seen.values()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"carts did not converge on {expected}: {seen}")


async def test_a_traveller_checks_out_in_asia_what_they_added_in_europe(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {"ap-south": {"SKU-1": 10, "SKU-6": 5}, "us-east": {"SKU-7": 5}})
    customer = f"c-{new_key()}"
    await put(api, "eu-west", customer, "SKU-1", 2)
    await put(api, "eu-west", customer, "SKU-7", 1)
    await everywhere(api, customer, {"SKU-1": 2, "SKU-7": 1})

    await put(api, "ap-south", customer, "SKU-1", 3)  # saw the 2: replaces it
    await put(api, "ap-south", customer, "SKU-6", 1)
    checkout = await api.post(
        f"/carts/{customer}/checkout",
        json={"payment_token": "tok_ok"},
        headers={"X-Region": "ap-south", "Idempotency-Key": (key := new_key())},
    )
    assert checkout.status_code == 202, checkout.text
    saga = await outcome(client, key)

    assert saga.status == "completed"
    assert saga.home_region == "ap-south"
    assert {line.sku: line.quantity for line in saga.lines} == {"SKU-1": 3, "SKU-6": 1, "SKU-7": 1}
    assert {a.region for a in saga.allocations} == {"ap-south", "us-east"}
    assert [s.name for s in saga.steps][-1] == "clear_cart"
    await everywhere(api, customer, {})
    again = await api.post(
        f"/carts/{customer}/checkout",
        json={"payment_token": "tok_ok"},
        headers={"X-Region": "ap-south", "Idempotency-Key": key},
    )
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_concurrent_edits_in_three_regions_converge_without_loss(
    api: httpx.AsyncClient, cluster: Cluster
) -> None:
    customer = f"c-{new_key()}"
    for region in REGIONS:
        await cluster.stop(region)  # nobody hears of anybody: every edit is concurrent
    await put(api, "us-east", customer, "SKU-1", 1)
    await put(api, "eu-west", customer, "SKU-1", 2)
    await put(api, "ap-south", customer, "SKU-5", 4)
    await put(api, "ap-south", customer, "SKU-1", 3)
    for region in REGIONS:
        cluster.start(region)

    # Concurrent sets of a SKU add up; a region's later set replaces its own earlier one.
    await everywhere(api, customer, {"SKU-1": 6, "SKU-5": 4})
    status = (await api.get("/regions/eu-west/replication")).json()
    assert sum(s["conflicts_detected"] for s in status["sources"]) > 0


async def test_a_region_cut_off_converges_when_it_returns(
    api: httpx.AsyncClient, cluster: Cluster
) -> None:
    customer = f"c-{new_key()}"
    await put(api, "us-east", customer, "SKU-2", 1)
    await everywhere(api, customer, {"SKU-2": 1})
    await cluster.stop("ap-south")

    await put(api, "eu-west", customer, "SKU-2", 2)  # saw the 1: replaces it
    await put(api, "us-east", customer, "SKU-3", 1)
    await everywhere(api, customer, {"SKU-2": 2, "SKU-3": 1}, ("us-east", "eu-west"))
    assert await cart(api, "ap-south", customer) == {"SKU-2": 1}
    remove = await api.delete(f"/carts/{customer}/items/SKU-3", headers={"X-Region": "eu-west"})
    assert remove.status_code == 200
    cluster.start("ap-south")

    await everywhere(api, customer, {"SKU-2": 2})


async def test_cart_requests_are_checked(api: httpx.AsyncClient) -> None:
    customer = f"c-{new_key()}"
    unknown_region = await api.get(f"/carts/{customer}", headers={"X-Region": "mars"})
    unknown_sku = await api.put(f"/carts/{customer}/items/SKU-99", json={"quantity": 1})
    zero = await api.put(f"/carts/{customer}/items/SKU-1", json={"quantity": 0})
    empty = await api.post(
        f"/carts/{customer}/checkout",
        json={"payment_token": "tok_ok"},
        headers={"Idempotency-Key": new_key()},
    )
    default = await api.get(f"/carts/{customer}")

    assert unknown_region.status_code == 422
    assert "X-Region" in unknown_region.json()["message"]
    assert unknown_sku.status_code == 404
    assert zero.status_code == 422
    assert "quantity" in zero.json()["message"]
    assert empty.status_code == 409
    assert default.json() == {"customer_id": customer, "region": "us-east", "items": []}
