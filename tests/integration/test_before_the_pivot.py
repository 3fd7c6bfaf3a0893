"""Sagas held before the pivot: a cancel undoes every step taken, and a compensation that
cannot finish parks the saga in needs_attention, never silently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from geosaga.settings import Settings
from regions.store import Store
from tests.cluster import Cluster
from tests.helpers import assert_invariants, order, outcome, stock, submit
from workflows.contract import Reason, SagaState, SagaStatus, Stage, StepStatus, workflow_id
from workflows.order_saga import OrderSaga


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Slower payment retries hold sagas before the pivot long enough to act on them."""
    return settings.model_copy(
        update={"retry_initial_interval_seconds": 1.0, "retry_maximum_interval_seconds": 2.0}
    )


async def test_cancel_while_authorising_voids_and_releases_everything(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-2": 1}, "eu-west": {"SKU-2": 5}})
    order_id = await submit(api, order("us-east", [("SKU-2", 3)], token="tok_flaky"))
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    held = await _until(handle, lambda s: s.stage == Stage.AUTHORISING)

    cancelled = await api.post(f"/orders/{order_id}/cancel")
    saga = await outcome(client, order_id)

    assert cancelled.status_code == 202, cancelled.text
    assert {s.region for s in held.steps if s.name == "reserve"} == {"us-east", "eu-west"}
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert "capture" not in [s.name for s in saga.steps]
    undone = [(c.name, c.region, c.status) for c in saga.compensations]
    assert undone[0] == ("void", "us-east", StepStatus.SUCCEEDED)
    assert sorted(undone[1:]) == [
        ("release", "eu-west", StepStatus.SUCCEEDED),
        ("release", "us-east", StepStatus.SUCCEEDED),
    ]
    assert_invariants(stores, initial, [saga])


async def test_compensation_waiting_on_a_down_region_needs_attention_then_finishes(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    initial = stock(stores, {"us-east": {"SKU-2": 1}, "ap-south": {"SKU-2": 5}})
    order_id = await submit(api, order("us-east", [("SKU-2", 3)], token="tok_flaky"))
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    await _until(handle, lambda s: s.stage == Stage.AUTHORISING)
    await cluster.stop("ap-south")

    cancelled = await api.post(f"/orders/{order_id}/cancel")
    stuck = await _until(handle, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
    cluster.start("ap-south")
    saga = await outcome(client, order_id)

    assert cancelled.status_code == 202
    [waiting] = [c for c in stuck.compensations if c.region == "ap-south"]
    assert waiting.status == StepStatus.RETRYING
    assert stuck.message is not None
    assert "release in ap-south keeps failing" in stuck.message
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert_invariants(stores, initial, [saga])


async def _until(
    handle: WorkflowHandle[OrderSaga, SagaState], condition: Callable[[SagaState], bool]
) -> SagaState:
    for _ in range(600):
        state = await handle.query(OrderSaga.state)
        if condition(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"the saga never got there: {state}")
