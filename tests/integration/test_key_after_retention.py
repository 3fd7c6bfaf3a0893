"""An Idempotency-Key names one order for good: once Temporal no longer knows its saga (the
namespace's retention dropped it), the key answers with that order and starts nothing.

Deleting an execution takes the dev server about half a minute, so Temporal's forgetting is
played by an API on a namespace of its own that never saw the saga, over the same stores.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from sqlmodel import select
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.main import create_app
from foundation.settings import Settings
from foundation.temporal import connect, ensure_search_attributes
from regions.models import Capture, OrderRequest
from regions.store import Store
from regions.values import SagaStatus
from tests.cluster import Cluster
from tests.helpers import auth_headers, new_key, on_hand, order, outcome, stock, submit
from workflows.contract import SEARCH_ATTRIBUTES, workflow_id


@pytest_asyncio.fixture
async def forgetful(
    settings: Settings, client: Client, cluster: Cluster
) -> AsyncIterator[tuple[httpx.AsyncClient, Client]]:
    """The API over the same stores, on a namespace where no saga ever ran."""
    namespace = f"forgot-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    elsewhere = settings.model_copy(update={"temporal_namespace": namespace})
    other = await connect(elsewhere)
    for _ in range(600):  # the new namespace takes a moment to reach every service
        try:
            await other.count_workflows()
            break
        except RPCError:
            await asyncio.sleep(0.05)
    # As where the saga once ran: a second start there would succeed.
    await ensure_search_attributes(other, SEARCH_ATTRIBUTES)
    app = create_app(elsewhere)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://geosaga.test",
            headers=auth_headers(elsewhere),
        ) as http,
    ):
        yield http, other


def captures(stores: dict[str, Store], order_id: str) -> int:
    count = 0
    for store in stores.values():
        with store.reading() as session:
            count += len(session.exec(select(Capture).where(Capture.order_id == order_id)).all())
    return count


async def test_a_key_used_again_after_retention_starts_no_second_saga(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    forgetful: tuple[httpx.AsyncClient, Client],
) -> None:
    later, forgotten = forgetful
    stock(stores, {"us-east": {"SKU-1": 10}})
    body = order("us-east", [("SKU-1", 2)])
    key = new_key()
    first = await outcome(client, await submit(api, body, key))
    assert first.status == SagaStatus.COMPLETED

    again = await later.post("/orders", json=body, headers={"Idempotency-Key": key})

    assert again.status_code == 202, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["order_id"] == key
    with stores["us-east"].reading() as session:
        kept = session.get(OrderRequest, key)
    assert kept is not None
    assert kept.started
    # Nothing new ran: no saga, the stock taken once, one capture.
    with pytest.raises(RPCError) as missing:
        await forgotten.get_workflow_handle(workflow_id(key)).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert on_hand(stores)["us-east"]["SKU-1"] == (8, 0)
    assert captures(stores, key) == 1


async def test_a_key_used_again_after_retention_with_another_body_is_409(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    forgetful: tuple[httpx.AsyncClient, Client],
) -> None:
    later, _ = forgetful
    stock(stores, {"us-east": {"SKU-1": 10}, "eu-west": {"SKU-1": 10}})
    key = new_key()
    await outcome(client, await submit(api, order("us-east", [("SKU-1", 1)]), key))

    # Another quantity, and another home region: the key is kept in us-east, yet found.
    for body in (order("us-east", [("SKU-1", 3)]), order("eu-west", [("SKU-1", 1)])):
        response = await later.post("/orders", json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 409, response.text
        assert "already used" in response.json()["detail"]
    assert on_hand(stores)["eu-west"]["SKU-1"] == (10, 0)


async def test_a_key_kept_before_its_saga_started_starts_it(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    """A request that died between keeping the key and starting the saga: the retry starts it."""
    from orders.sagas import fingerprint
    from orders.schemas import OrderRequest as OrderBody
    from regions import order_requests

    stock(stores, {"us-east": {"SKU-1": 10}})
    body = order("us-east", [("SKU-1", 1)])
    key = new_key()
    order_requests.keep(
        stores["us-east"], key, fingerprint(OrderBody.model_validate(body)), started=False
    )

    response = await api.post("/orders", json=body, headers={"Idempotency-Key": key})

    assert response.status_code == 202, response.text
    assert "Idempotent-Replayed" not in response.headers
    assert (await outcome(client, key)).status == SagaStatus.COMPLETED
