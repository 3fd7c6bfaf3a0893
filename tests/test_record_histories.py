"""Records the replay corpus in tests/histories/ (one history per saga path) and relay histories
in tests/relay-histories/.

Not part of the normal run. Re-record after an intended change to the saga, into a NEW folder:

    .venv/bin/python -m pytest -m record tests/test_record_histories.py --histories=v3

then replay them (`make test` does) and commit the JSON files. Never re-record into an existing
folder: replaying histories recorded by earlier code is what proves a change is safe behind
`workflow.patched` (tests/integration/test_patches.py replays v1 for that).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from foundation.settings import Settings
from regions.store import Store
from regions.values import SagaStatus
from tests.cluster import Cluster
from tests.helpers import order, outcome, place, stock, submit
from workflows.contract import SagaState, Stage, workflow_id
from workflows.order_saga import OrderSaga

HISTORIES = Path(__file__).parent / "histories"

pytestmark = [pytest.mark.record, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture
def folder(request: pytest.FixtureRequest) -> Path:
    path = HISTORIES / str(request.config.getoption("--histories"))
    path.mkdir(parents=True, exist_ok=True)
    return path


async def save(client: Client, order_id: str, path: Path) -> None:
    history = await client.get_workflow_handle(workflow_id(order_id)).fetch_history()
    path.write_text(history.to_json() + "\n")


async def until_stage(handle: WorkflowHandle[OrderSaga, SagaState], stage: Stage) -> None:
    while (await handle.query(OrderSaga.state)).stage != stage:
        await asyncio.sleep(0.02)


async def test_record_saga_paths(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    cluster: Cluster,
    folder: Path,
) -> None:
    stock(
        stores,
        {"us-east": {"SKU-1": 20, "SKU-2": 10}, "eu-west": {"SKU-1": 5, "SKU-2": 2}},
    )
    paths = {
        "completed": order("us-east", [("SKU-1", 2)]),
        "split": order("eu-west", [("SKU-2", 4)]),
        "declined": order("us-east", [("SKU-1", 1)], token="tok_decline"),
        "out-of-stock": order("eu-west", [("SKU-2", 50)]),
        "flaky": order("us-east", [("SKU-1", 1)], token="tok_flaky"),
    }
    for name, body in paths.items():
        saga = await place(api, client, body)
        assert saga.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
        await save(client, saga.order_id, folder / f"{name}.json")

    # Cancelled while authorising: reservations held, so the history shows them undone.
    order_id = await submit(api, order("us-east", [("SKU-1", 1)], token="tok_flaky"))
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    await until_stage(handle, Stage.AUTHORISING)
    assert (await api.post(f"/orders/{order_id}/cancel")).status_code == 202
    assert (await outcome(client, order_id)).status == SagaStatus.COMPENSATED
    await save(client, order_id, folder / "cancelled.json")

    # A release that waits on a region that is down: needs attention, then finishes.
    order_id = await submit(api, order("eu-west", [("SKU-2", 4)], token="tok_flaky"))
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    await until_stage(handle, Stage.AUTHORISING)
    await cluster.stop("us-east")
    assert (await api.post(f"/orders/{order_id}/cancel")).status_code == 202
    while (await handle.query(OrderSaga.state)).status != SagaStatus.NEEDS_ATTENTION:
        await asyncio.sleep(0.1)
    cluster.start("us-east")
    assert (await outcome(client, order_id)).status == SagaStatus.COMPENSATED
    await save(client, order_id, folder / "needs-attention-region-down.json")

    # A void that can never succeed (tok_void_fail, nothing in stock), resolved by a person.
    await cluster.stop("ap-south")
    order_id = await submit(api, order("us-east", [("SKU-4", 1)], token="tok_void_fail"))
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    while (await handle.query(OrderSaga.state)).status != SagaStatus.NEEDS_ATTENTION:
        await asyncio.sleep(0.1)
    cluster.start("ap-south")
    resolved = await api.post(
        f"/orders/{order_id}/resolve",
        json={"resolved_by": "ops@example.com", "note": "voided by hand in the gateway"},
    )
    assert resolved.status_code == 202, resolved.text
    assert (await outcome(client, order_id)).status == SagaStatus.COMPENSATED
    await save(client, order_id, folder / "needs-attention-resolved.json")


RELAY_HISTORIES = Path(__file__).parent / "relay-histories"


async def test_record_relays(
    client: Client, settings: Settings, stores: dict[str, Store], request: pytest.FixtureRequest
) -> None:
    """Relay histories: each relay has delivered batches, and is running (relays never end)."""
    folder = RELAY_HISTORIES / str(request.config.getoption("--histories"))
    folder.mkdir(parents=True, exist_ok=True)
    async with Cluster(client, settings, stores, replication=True) as cluster:
        for on_hand in (5, 7):
            stock(stores, {region: {"SKU-1": on_hand} for region in stores})
            await asyncio.sleep(1)
        for relay in cluster.relays:
            history = await client.get_workflow_handle(relay).fetch_history()
            prefix = settings.region_task_queue_prefix
            name = relay.removeprefix("relay:").replace("->", "-to-").replace(prefix, "")
            (folder / f"{name}.json").write_text(history.to_json() + "\n")
