"""The HTTP contract: validation names the field, idempotent submission, reads and listing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlmodel import select
from temporalio.client import Client

from api.main import create_app
from foundation.settings import Settings
from geosaga.devserver import free_port
from regions.models import Capture
from regions.store import Store
from regions.values import SagaStatus
from tests.helpers import auth_headers, new_key, order, outcome, place, stock, submit
from workflows.contract import workflow_id

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_health_catalog_and_regions(api: httpx.AsyncClient, settings: Settings) -> None:
    health = await api.get("/healthz")
    catalog = await api.get("/catalog")
    regions = await api.get("/regions")

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert {"sku": "SKU-1", "name": "Travel mug", "unit_price": "12.50", "currency": "USD"} in (
        catalog.json()
    )
    assert regions.json() == [
        {"name": name, "task_queue": settings.task_queue(name)} for name in settings.regions
    ]


async def test_stock_is_read_and_set_per_region(api: httpx.AsyncClient) -> None:
    updated = await api.put("/regions/eu-west/stock/SKU-3", json={"on_hand": 7})
    listed = await api.get("/regions/eu-west/stock")

    assert updated.status_code == 200
    assert updated.json() == {"sku": "SKU-3", "on_hand": 7, "reserved": 0, "available": 7}
    assert {"sku": "SKU-3", "on_hand": 7, "reserved": 0, "available": 7} in listed.json()
    assert (await api.get("/regions/mars/stock")).status_code == 404
    assert (await api.put("/regions/eu-west/stock/SKU-99", json={"on_hand": 1})).status_code == 404
    negative = await api.put("/regions/eu-west/stock/SKU-3", json={"on_hand": -1})
    assert negative.status_code == 422
    assert "on_hand" in negative.json()["message"]


async def test_stock_cannot_fall_below_what_sagas_hold(
    api: httpx.AsyncClient, stores: dict[str, Store]
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    # A saga that cannot authorise holds its reservation while it retries payment.
    order_id = await submit(api, order("us-east", [("SKU-1", 4)], token="tok_flaky"))
    held = await _wait_for_reserved(api, "us-east", "SKU-1")

    refused = await api.put("/regions/us-east/stock/SKU-1", json={"on_hand": held - 1})

    assert refused.status_code == 409
    assert "reserved" in refused.json()["detail"]
    assert (await api.get(f"/orders/{order_id}")).status_code == 200


async def _wait_for_reserved(api: httpx.AsyncClient, region: str, sku: str) -> int:
    for _ in range(200):
        levels = {row["sku"]: row for row in (await api.get(f"/regions/{region}/stock")).json()}
        if levels[sku]["reserved"]:
            return int(levels[sku]["reserved"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing was reserved of {sku} in {region}")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**order(), "lines": [{"sku": "SKU-404", "quantity": 1}]}, "lines[0].sku"),
        ({**order(), "home_region": "mars"}, "home_region"),
        ({**order(), "lines": [{"sku": "SKU-1", "quantity": 0}]}, "lines[0].quantity"),
        ({**order(), "lines": [{"sku": "SKU-1", "quantity": -3}]}, "lines[0].quantity"),
        ({**order(), "lines": [{"sku": "SKU-1", "quantity": 1.5}]}, "lines[0].quantity"),
        ({**order(), "lines": [{"sku": "SKU-1", "quantity": "2"}]}, "lines[0].quantity"),
        ({**order(), "lines": [{"sku": "SKU-1", "quantity": 10**12}]}, "lines[0].quantity"),
        ({**order(), "lines": []}, "lines"),
        ({**order(), "lines": [{"sku": "SKU-1", "quantity": 1}] * 2}, "lines[1].sku"),
        (
            {**order(), "lines": [{"sku": f"SKU-{i % 8 + 1}", "quantity": 1} for i in range(60)]},
            "lines",
        ),
        ({**order(), "customer_id": "bad id\n"}, "customer_id"),
        ({**order(), "payment_token": ""}, "payment_token"),
        ({**order(), "coupon": "FREE"}, "coupon"),
        ({key: value for key, value in order().items() if key != "lines"}, "lines"),
    ],
)
async def test_bad_orders_are_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/orders", json=body, headers={"Idempotency-Key": new_key()})

    assert response.status_code == 422, response.text
    assert field in response.json()["message"]


async def test_missing_or_malformed_idempotency_key_is_refused(api: httpx.AsyncClient) -> None:
    missing = await api.post("/orders", json=order())
    malformed = await api.post(
        "/orders", json=order(), headers={"Idempotency-Key": "spaces are not allowed"}
    )

    assert missing.status_code == 422
    assert "Idempotency-Key" in missing.json()["message"]
    assert malformed.status_code == 422
    assert "Idempotency-Key" in malformed.json()["message"]


async def test_malformed_json_and_oversized_bodies_are_refused(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {"Idempotency-Key": new_key(), "content-type": "application/json"}
    malformed = await api.post("/orders", content=b'{"customer_id": ', headers=headers)
    oversized = await api.post(
        "/orders", content=b" " * (settings.max_body_bytes + 1), headers=headers
    )

    assert malformed.status_code == 422
    assert "JSON" in malformed.json()["message"]
    assert oversized.status_code == 413


async def test_one_key_starts_one_saga_even_when_submissions_race(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    key, body = new_key(), order("us-east", [("SKU-1", 2)])

    responses = await asyncio.gather(
        *(api.post("/orders", json=body, headers={"Idempotency-Key": key}) for _ in range(5))
    )

    assert [r.status_code for r in responses] == [202] * 5
    assert {r.json()["order_id"] for r in responses} == {key}
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    saga = await outcome(client, key)
    assert saga.status == SagaStatus.COMPLETED
    runs = [e async for e in client.list_workflows(f'WorkflowId = "{workflow_id(key)}"')]
    assert len(runs) == 1
    with stores["us-east"].reading() as session:
        assert len(session.exec(select(Capture)).all()) == 1


async def test_same_key_with_another_body_conflicts(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    key = new_key()
    await place(api, client, order("us-east", [("SKU-1", 1)]), key=key)

    again = await api.post(
        "/orders", json=order("us-east", [("SKU-1", 1)]), headers={"Idempotency-Key": key}
    )
    other = await api.post(
        "/orders", json=order("us-east", [("SKU-1", 2)]), headers={"Idempotency-Key": key}
    )

    assert again.status_code == 202
    assert again.json()["status"] == "completed"
    assert other.status_code == 409


async def test_order_view_and_listing(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], settings: Settings
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    customer = f"c-{new_key()}"
    done = await place(api, client, order("us-east", [("SKU-1", 1)], customer=customer))
    declined = await place(
        api, client, order("us-east", [("SKU-1", 1)], token="tok_decline", customer=customer)
    )

    view = (await api.get(f"/orders/{done.order_id}")).json()
    compensated = (await api.get(f"/orders?status=compensated&customer={customer}")).json()
    everything = (await api.get(f"/orders?customer={customer}&region=us-east")).json()

    assert view["status"] == "completed"
    assert view["total"] == "12.50"
    assert view["links"]["ui"] == settings.ui_workflow_url(workflow_id(done.order_id))
    assert [step["name"] for step in view["steps"]][-2:] == ["commit", "record_outcome"]
    assert [o["order_id"] for o in compensated] == [declined.order_id]
    assert compensated[0]["reason"] == "payment_declined"
    assert {o["order_id"] for o in everything} == {done.order_id, declined.order_id}
    assert (await api.get("/orders/no-such-order")).status_code == 404
    assert (await api.post("/orders/no-such-order/cancel")).status_code == 404
    assert (await api.get("/orders?status=lost")).status_code == 422


@pytest_asyncio.fixture
async def unreachable_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    dead = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(dead)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers(dead),
        ) as http,
    ):
        yield http


async def test_unreachable_temporal_is_503_with_a_reason(
    unreachable_api: httpx.AsyncClient,
) -> None:
    health = await unreachable_api.get("/healthz")
    submitted = await unreachable_api.post(
        "/orders", json=order(), headers={"Idempotency-Key": new_key()}
    )
    read = await unreachable_api.get("/orders/anything")

    assert health.status_code == 503
    assert "unreachable" in health.json()["detail"]
    assert submitted.status_code == 503
    assert read.status_code == 503
