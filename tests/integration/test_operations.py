"""Operators find sagas by search attribute, help stuck ones along, and rerun failed ones."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlmodel import select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
)
from temporalio.client import Client, WorkflowExecutionStatus

from api.main import create_app
from foundation.settings import Settings
from geosaga.devserver import DevServer, temporal_cli
from orders import operations
from regions.models import Authorisation
from regions.store import Store
from regions.values import AuthorisationStatus, Reason, SagaStatus
from tests.cluster import Cluster
from tests.helpers import (
    assert_invariants,
    auth_headers,
    new_key,
    on_hand,
    order,
    outcome,
    place,
    stock,
    stuck_release,
    submit,
    until,
)
from workflows.contract import Stage, StepStatus, workflow_id

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A stuck compensation would wait a minute before its next round: only an operator's
    retry (or resolution) moves it sooner."""
    return settings.model_copy(update={"retry_maximum_interval_seconds": 60.0})


async def cli(settings: Settings, *args: str) -> tuple[int, str]:
    """Runs `geosaga` without blocking the event loop: the workers live in this process."""
    env = {
        **os.environ,
        "GEOSAGA_TEMPORAL_ADDRESS": settings.temporal_address,
        "GEOSAGA_WORKFLOW_TASK_QUEUE": settings.workflow_task_queue,
        "GEOSAGA_REGION_TASK_QUEUE_PREFIX": settings.region_task_queue_prefix,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "geosaga",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return await process.wait(), output.decode()


async def stuck_void(api: httpx.AsyncClient, client: Client) -> str:
    """An order whose payment hold cannot be voided: tok_void_fail, and nothing in stock."""
    customer = f"c-{new_key()}"
    order_id = await submit(api, order("us-east", [("SKU-4", 2)], "tok_void_fail", customer))
    await until(client, order_id, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
    return order_id


async def test_a_void_that_keeps_failing_needs_attention_until_resolved(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    order_id = await stuck_void(api, client)

    listed = (await api.get("/orders?status=needs_attention")).json()
    retried = await api.post(f"/orders/{order_id}/compensations/retry")
    still = await until(client, order_id, lambda s: s.compensations[0].attempts > 3)
    resolved = await api.post(
        f"/orders/{order_id}/resolve",
        json={"resolved_by": "ops@example.com", "note": "voided by hand in the gateway"},
    )
    saga = await outcome(client, order_id)

    assert order_id in [o["order_id"] for o in listed]
    assert retried.status_code == 202, retried.text
    [void] = still.compensations
    assert void.status == StepStatus.RETRYING
    assert still.status == SagaStatus.NEEDS_ATTENTION
    assert resolved.status_code == 202, resolved.text
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.OUT_OF_STOCK
    assert [(c.name, c.status) for c in saga.compensations] == [("void", StepStatus.RESOLVED)]
    [resolution] = saga.resolutions
    assert resolution.resolved_by == "ops@example.com"
    assert resolution.note == "voided by hand in the gateway"
    assert resolution.compensations == ["void in us-east"]
    # geosaga cannot void it: the authorisation stays open in its books, and the record says
    # who took responsibility for it.
    with stores["us-east"].reading() as session:
        [authorisation] = session.exec(select(Authorisation)).all()
    assert authorisation.status == AuthorisationStatus.AUTHORISED
    assert all(
        reserved == 0 for levels in on_hand(stores).values() for _, reserved in levels.values()
    )


async def test_a_stuck_stock_release_cannot_be_resolved_and_finishes_when_its_region_returns(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    """A reservation has no console to release it in by hand: resolving its stuck release
    would leave the units reserved for good, so the saga refuses and keeps retrying it."""
    initial, order_id = await stuck_release(api, client, stores, cluster)

    refused = await api.post(
        f"/orders/{order_id}/resolve", json={"resolved_by": "ops", "note": "released by hand"}
    )
    cluster.start("ap-south")
    # What the operator does instead: ask for the next round now, not after its backoff.
    retried = await api.post(f"/orders/{order_id}/compensations/retry")
    saga = await outcome(client, order_id)

    assert refused.status_code == 409, refused.text
    assert retried.status_code == 202, retried.text
    assert "only a payment hold can be released by hand" in refused.json()["detail"]
    assert "release in ap-south keeps retrying" in refused.json()["detail"]
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.resolutions == []
    assert_invariants(stores, initial, [saga])


async def test_operators_resolve_from_the_command_line(
    api: httpx.AsyncClient, client: Client, cluster: Cluster, settings: Settings
) -> None:
    order_id = await stuck_void(api, client)

    listed = await cli(settings, "attention", "list")
    retried = await cli(settings, "attention", "retry", order_id)
    resolved = await cli(
        settings, "attention", "resolve", order_id, "--by", "ops", "--why", "voided by hand"
    )
    saga = await outcome(client, order_id)
    again = await cli(settings, "attention", "resolve", order_id, "--by", "ops", "--why", "twice")

    assert listed[0] == 0, listed[1]
    assert order_id in listed[1].split()
    assert retried[0] == 0, retried[1]
    assert resolved[0] == 0, resolved[1]
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.resolutions[0].resolved_by == "ops"
    assert again[0] == 1
    assert "already finished" in again[1]


async def test_the_cli_takes_an_order_id_or_its_workflow_id_and_fails_in_one_line(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], settings: Settings
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    done = await place(api, client, order("us-east", [("SKU-1", 1)]))
    wid = workflow_id(done.order_id)

    answers = {
        "retry unknown": await cli(settings, "retry", "no-such-order"),
        "retry workflow id": await cli(settings, "retry", wid),
        "retry order id": await cli(settings, "retry", done.order_id),
        "attention retry workflow id": await cli(settings, "attention", "retry", wid),
        "attention resolve unknown": await cli(
            settings, "attention", "resolve", "order-nothing", "--by", "ops", "--why", "n/a"
        ),
    }

    for name, (code, output) in answers.items():
        assert code == 1, (name, output)
        assert len(output.strip().splitlines()) == 1, (name, output)
        assert "Traceback" not in output, (name, output)
    assert answers["retry unknown"][1].strip() == "no order no-such-order"
    assert "this one finished as completed" in answers["retry workflow id"][1]
    assert "this one finished as completed" in answers["retry order id"][1]
    assert "already finished" in answers["attention retry workflow id"][1]
    assert answers["attention resolve unknown"][1].strip() == "no order order-nothing"


async def test_the_cli_says_in_one_line_when_temporal_is_unreachable(
    settings: Settings,
) -> None:
    unreachable = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})

    for args in (("retry", "x"), ("attention", "retry", "x"), ("attention", "list")):
        code, output = await cli(unreachable, *args)

        assert code == 1, (args, output)
        assert output.strip().splitlines() == [
            "Temporal is unreachable at 127.0.0.1:1 (is `make run` running? "
            "GEOSAGA_TEMPORAL_ADDRESS says where)"
        ]


async def test_retry_now_skips_the_backoff(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    initial = stock(stores, {"us-east": {"SKU-2": 1}, "ap-south": {"SKU-2": 5}})
    await cluster.stop("us-east")
    order_id = await submit(api, order("us-east", [("SKU-2", 3)], token="tok_flaky"))
    await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)
    await cluster.stop("ap-south")
    assert (await api.post(f"/orders/{order_id}/cancel")).status_code == 202
    cluster.start("us-east")
    await until(client, order_id, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
    cluster.start("ap-south")

    retried = await api.post(f"/orders/{order_id}/compensations/retry")
    # Without the retry the next round would wait out this module's minute-long backoff.
    saga = await outcome(client, order_id, timeout=20)

    assert retried.status_code == 202, retried.text
    assert saga.status == SagaStatus.COMPENSATED
    assert all(c.status == StepStatus.SUCCEEDED for c in saga.compensations)
    assert_invariants(stores, initial, [saga])


async def test_operator_actions_are_refused_when_nothing_is_stuck(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    done = await place(api, client, order("us-east", [("SKU-1", 1)]))

    retried = await api.post(f"/orders/{done.order_id}/compensations/retry")
    resolved = await api.post(
        f"/orders/{done.order_id}/resolve", json={"resolved_by": "ops", "note": "n/a"}
    )
    rerun = await api.post(f"/orders/{done.order_id}/retry")
    unnamed = await api.post(
        f"/orders/{done.order_id}/resolve", json={"resolved_by": "", "note": "n/a"}
    )

    assert (retried.status_code, resolved.status_code, rerun.status_code) == (409, 409, 409)
    assert "finished" in rerun.json()["detail"]
    assert unnamed.status_code == 422
    assert "resolved_by" in unnamed.json()["message"]


async def test_a_terminated_saga_is_reset_and_finishes_without_double_effects(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    initial = stock(stores, {"eu-west": {"SKU-1": 5}})
    # The home region is down: stock comes from eu-west, and the authorisation waits.
    await cluster.stop("us-east")
    order_id = await submit(api, order("us-east", [("SKU-1", 3)]))
    held = await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)
    await client.get_workflow_handle(workflow_id(order_id)).terminate("an operator stopped it")

    rerun = await api.post(f"/orders/{order_id}/retry")
    cluster.start("us-east")
    saga = await outcome(client, order_id)

    assert [s.region for s in held.steps if s.name == "reserve"] == ["eu-west"]
    assert rerun.status_code == 202, rerun.text
    assert rerun.json()["action"] == "reset"
    assert saga.status == SagaStatus.COMPLETED, (saga.reason, saga.message, saga.steps)
    # The reset run kept the first run's reservation instead of taking a second one.
    assert [s.region for s in saga.steps if s.name == "reserve"] == ["eu-west"]
    assert_invariants(stores, initial, [saga])


async def test_a_saga_terminated_while_compensating_is_rerun_to_the_end(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    """The rerun inherits a release in flight (its region was down): the reset run dispatches
    it again, or times it out and starts the next round, and the saga finishes compensating."""
    initial = stock(stores, {"us-east": {"SKU-1": 5}})
    order_id = await submit(api, order("us-east", [("SKU-1", 1)], token="tok_flaky"))
    await until(client, order_id, lambda s: s.stage == Stage.AUTHORISING)
    await cluster.stop("us-east")
    await api.post(f"/orders/{order_id}/cancel")
    await until(client, order_id, lambda s: any(c.name == "release" for c in s.compensations))
    await client.get_workflow_handle(workflow_id(order_id)).terminate("an operator stopped it")

    rerun = await api.post(f"/orders/{order_id}/retry")
    cluster.start("us-east")
    saga = await outcome(client, order_id)

    assert rerun.status_code == 202, rerun.text
    assert rerun.json()["action"] == "reset"
    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.CANCELLED
    assert_invariants(stores, initial, [saga])


async def test_a_step_that_ends_before_the_rerun_resets_it_is_left_alone(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    """The rerun lists the steps its new run inherited in flight, then resets each: one that
    ended in between, or a run already over, is gone by then (it answered 502 under
    `geosaga torture`, seed 104 on SQLite)."""
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 1)]))
    run_id = (await client.get_workflow_handle(workflow_id(saga.order_id)).describe()).run_id
    service = client.workflow_service
    describe = service.describe_workflow_execution

    async def with_a_step_just_ended(
        request: DescribeWorkflowExecutionRequest, **kwargs: Any
    ) -> DescribeWorkflowExecutionResponse:
        described = await describe(request, **kwargs)
        described.pending_activities.add(
            activity_id="99", state=PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        )
        return described

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service, "describe_workflow_execution", with_a_step_just_ended)
        await operations.redispatch_pending(client, workflow_id(saga.order_id), run_id)


@pytest_asyncio.fixture
async def unpolled_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose sagas land on a queue no worker polls: they never take a first step."""
    idle = settings.model_copy(update={"workflow_task_queue": f"idle-{new_key()}"})
    app = create_app(idle)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers(idle),
        ) as http,
    ):
        yield http


async def test_a_saga_terminated_before_its_first_step_is_started_afresh(
    api: httpx.AsyncClient,
    unpolled_api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 5}})
    order_id = await submit(unpolled_api, order("us-east", [("SKU-1", 2)]))
    handle = client.get_workflow_handle(workflow_id(order_id))
    await handle.terminate("never started")

    rerun = await api.post(f"/orders/{order_id}/retry")
    saga = await outcome(client, order_id)

    assert rerun.status_code == 202, rerun.text
    assert rerun.json()["action"] == "restarted"
    assert saga.status == SagaStatus.COMPLETED
    runs = [e async for e in client.list_workflows(f'WorkflowId = "{workflow_id(order_id)}"')]
    assert sorted(r.status for r in runs if r.status is not None) == sorted(
        [WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.COMPLETED]
    )
    assert_invariants(stores, initial, [saga])


async def test_search_attributes_find_orders_in_temporal_list(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], temporal_server: DevServer
) -> None:
    stock(stores, {"eu-west": {"SKU-1": 5}, "us-east": {"SKU-1": 5}})
    customer = f"c-{new_key()}"
    declined = await place(api, client, order("eu-west", [("SKU-1", 1)], "tok_decline", customer))
    await place(api, client, order("eu-west", [("SKU-1", 1)], "tok_ok", customer))
    await place(api, client, order("us-east", [("SKU-1", 1)], "tok_decline", customer))

    query = f'SagaStatus="compensated" AND HomeRegion="eu-west" AND CustomerId="{customer}"'
    listed = subprocess.run(
        [
            temporal_cli(),
            "workflow",
            "list",
            "--address",
            temporal_server.address,
            "--query",
            query,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
    )

    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout or "[]")
    assert [w["execution"]["workflowId"] for w in found] == [workflow_id(declined.order_id)]
