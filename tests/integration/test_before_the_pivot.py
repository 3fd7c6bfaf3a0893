"""Sagas held before the pivot: a cancel undoes every step taken, and a compensation that
cannot finish parks the saga in needs_attention, never silently."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from foundation.settings import Settings
from orders import operations
from regions.store import Store
from regions.values import Reason, SagaStatus
from tests.cluster import Cluster
from tests.helpers import assert_invariants, order, outcome, stock, submit, until
from workflows.contract import Stage, StepStatus, workflow_id


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
    held = await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)

    cancelled = await api.post(f"/orders/{order_id}/cancel")
    saga = await outcome(client, order_id)

    assert cancelled.status_code == 202, cancelled.text
    assert {s.region for s in held.steps if s.name == "reserve"} == {"us-east", "eu-west"}
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert "capture" not in [s.name for s in saga.steps]
    undone = [(c.name, c.region, c.status) for c in saga.compensations]
    # Newest first: the reservations (registered after the authorisation began), then the void.
    assert sorted(undone[:2]) == [
        ("release", "eu-west", StepStatus.SUCCEEDED),
        ("release", "us-east", StepStatus.SUCCEEDED),
    ]
    assert undone[2] == ("void", "us-east", StepStatus.SUCCEEDED)
    assert_invariants(stores, initial, [saga])


async def test_compensation_waiting_on_a_down_region_needs_attention_then_finishes(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    initial = stock(stores, {"us-east": {"SKU-2": 1}, "ap-south": {"SKU-2": 5}})
    order_id = await submit(api, order("us-east", [("SKU-2", 3)], token="tok_flaky"))
    await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)
    await cluster.stop("ap-south")

    cancelled = await api.post(f"/orders/{order_id}/cancel")
    stuck = await until(client, order_id, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
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


async def test_a_cancel_that_lands_with_a_stock_checks_timeout_compensates(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    """The stock check times out and the cancel arrives in the same workflow task: the saga
    compensates as cancelled (it used to fail, leaving its payment hold to nobody)."""
    initial = stock(stores, {"us-east": {"SKU-1": 5}})
    await cluster.stop("us-east")
    order_id = await submit(api, order("us-east", [("SKU-1", 1)]))
    await until(client, order_id, lambda s: any(step.name == "check_stock" for step in s.steps))
    await cluster.stop_workflows()
    handle = client.get_workflow_handle(workflow_id(order_id))
    # The check's schedule-to-close timeout passes while no saga runs, and the cancel waits at
    # the server meanwhile: the next workflow task brings both. (The SDK cannot wait for the
    # server to hold an update without a worker, so the cancel gets a moment to get there.)
    await _until_history_has(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT)
    cancelling = asyncio.ensure_future(api.post(f"/orders/{order_id}/cancel"))
    await asyncio.sleep(2)
    cluster.start_workflows()
    cancelled = await cancelling
    cluster.start("us-east")
    saga = await outcome(client, order_id)

    assert cancelled.status_code == 202, cancelled.text
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert_invariants(stores, initial, [saga])


async def _until_history_has(handle: WorkflowHandle[Any, Any], kind: EventType.ValueType) -> None:
    for _ in range(1200):
        async for event in handle.fetch_history_events():
            if event.event_type == kind:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never recorded {EventType.Name(kind)}")


async def test_a_cancel_no_worker_answers_in_time_is_503_and_still_lands(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every worker of the saga's queue is down: the cancel waits, then says so in a 503 (it
    answered 500 under `geosaga torture`, seeds 1 and 2), and Temporal keeps it for the saga."""
    monkeypatch.setattr(operations, "_UPDATE_TIMEOUT", timedelta(seconds=1))
    initial = stock(stores, {"us-east": {"SKU-1": 5}})
    order_id = await submit(api, order("us-east", [("SKU-1", 1)], token="tok_flaky"))
    await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)
    await cluster.stop_workflows()

    late = await api.post(f"/orders/{order_id}/cancel")
    cluster.start_workflows()
    saga = await outcome(client, order_id)

    assert late.status_code == 503, late.text
    assert late.headers["Retry-After"] == "5"
    assert "did not answer" in late.json()["detail"]
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert_invariants(stores, initial, [saga])
