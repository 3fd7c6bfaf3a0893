"""Regions learn of each other's changes through relayed events and converge."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory

from activities.contract import ActivityName
from foundation.settings import Settings
from regions import views
from regions.events import Envelope, Event, StockLevelChanged
from regions.hlc import Timestamp, wall_ms
from regions.models import InboxEvent, OrderView, OutboxEvent, StockView
from regions.outbox import kept
from regions.store import Store
from tests.cluster import Cluster
from tests.helpers import order, place, stock
from worker.process import relays_from
from workflows.relay import Relay
from workflows.relay_contract import relay_id

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

T = TypeVar("T")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"replication_poll_seconds": 0.5, "replication_max_attempts": 2}
    )


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


Level = tuple[int, int] | None


def stock_of(region: str, sku: str) -> Callable[[Store], Level]:
    """One region's stock of one SKU as `store` last heard of it (None: never)."""
    return lambda store: stock_views(store).get((region, sku))


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


async def test_a_region_cut_off_catches_up_and_nothing_is_applied_twice(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}, "eu-west": {"SKU-1": 10}})
    await converge(
        stores, stock_views, {("us-east", "SKU-1"): (10, 0), ("eu-west", "SKU-1"): (10, 0)}
    )
    await cluster.stop("ap-south")

    orders = [
        await place(api, client, order(home, [("SKU-1", 2)]))
        for home in ("us-east", "eu-west", "us-east")
    ]
    assert (await api.put("/regions/eu-west/stock/SKU-1", json={"on_hand": 20})).status_code == 200
    behind = (await api.get("/regions/ap-south/replication")).json()
    expected_orders: dict[str, tuple[str, str | None, list[str]]] = {
        o.order_id: ("completed", None, [o.home_region]) for o in orders
    }
    await converge({r: stores[r] for r in ("us-east", "eu-west")}, order_views, expected_orders)

    cluster.start("ap-south")
    await converge(stores, order_views, expected_orders)
    await converge(
        stores, stock_views, {("us-east", "SKU-1"): (6, 0), ("eu-west", "SKU-1"): (20, 0)}
    )
    caught_up = await _until_caught_up(api)

    lagging = {s["source"]: s["lag_events"] for s in behind["sources"]}
    assert lagging["us-east"] > 0
    assert lagging["eu-west"] > 0
    for region, status in caught_up.items():
        for source in status["sources"]:
            assert source["lag_events"] == 0, (region, source)
            # Every event of the source applied exactly once here.
            assert source["applied"] == _outbox_size(stores[source["source"]]), (region, source)
    metrics = (await api.get("/metrics")).text
    assert 'geosaga_replication_lag_events{destination="ap-south",source="us-east"} 0.0' in metrics
    assert "geosaga_replication_events_applied_total" in metrics


async def _until_caught_up(api: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(300):
        statuses = {
            region: (await api.get(f"/regions/{region}/replication")).json()
            for region in ("us-east", "eu-west", "ap-south")
        }
        if all(s["lag_events"] == 0 for st in statuses.values() for s in st["sources"]):
            return statuses
        await asyncio.sleep(0.1)
    raise AssertionError(f"replication never caught up: {statuses}")


def _outbox_size(store: Store) -> int:
    with store.reading() as session:
        return len(session.exec(select(OutboxEvent)).all())


async def test_planning_skips_regions_whose_replicated_stock_has_none(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {"eu-west": {"SKU-1": 1}, "us-east": {"SKU-1": 5}, "ap-south": {"SKU-1": 0}})
    await converge(
        stores,
        stock_views,
        {("eu-west", "SKU-1"): (1, 0), ("us-east", "SKU-1"): (5, 0), ("ap-south", "SKU-1"): (0, 0)},
    )

    saga = await place(api, client, order("eu-west", [("SKU-1", 3)]))

    assert saga.status == "completed"
    assert [s.region for s in saga.steps if s.name == "check_stock"] == ["eu-west", "us-east"]


async def test_a_poison_event_is_dead_lettered_by_the_relay_and_redriven_after_a_fix(
    api: httpx.AsyncClient,
    stores: dict[str, Store],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    working = views.HANDLERS[StockLevelChanged]

    def broken(session: Session, envelope: Envelope, event: Event) -> bool:
        if isinstance(event, StockLevelChanged) and event.sku == "SKU-8":
            raise RuntimeError("the stock view cannot take SKU-8")
        return working(session, envelope, event)

    handlers: dict[type[Event], views.Handler] = views.HANDLERS
    stock_event: type[Event] = StockLevelChanged
    monkeypatch.setitem(handlers, stock_event, broken)
    stock(stores, {"us-east": {"SKU-8": 4, "SKU-1": 1}})

    letters = await _until_dead_lettered(api, "eu-west")
    for region in ("us-east", "ap-south"):
        await _until_dead_lettered(api, region)
    # The aggregate's other SKU, and everything after, still flows.
    await converge(stores, stock_views, {("us-east", "SKU-1"): (1, 0)})
    monkeypatch.undo()  # the fix is deployed
    cli = await _geosaga(settings, "dead-letters", "list", "ap-south")
    event_id = letters[0]["event_id"]
    redriven = await api.post(f"/regions/eu-west/dead-letters/{event_id}/redrive")
    by_cli = await _geosaga(settings, "dead-letters", "redrive", "ap-south", event_id)
    missing = await api.post(f"/regions/eu-west/dead-letters/{event_id}/redrive")

    assert letters[0]["event_type"] == "StockLevelChanged"
    assert "cannot take SKU-8" in letters[0]["error"]
    assert letters[0]["attempts"] == settings.replication_max_attempts
    assert event_id in cli
    assert redriven.status_code == 200
    assert event_id in by_cli
    assert missing.status_code == 404
    seen = {region: stock_views(store) for region, store in stores.items()}
    assert seen["eu-west"][("us-east", "SKU-8")] == (4, 0)
    assert seen["ap-south"][("us-east", "SKU-8")] == (4, 0)


# Stock levels the stock view of the test below cannot take.
FAILING = {("SKU-9", 7), ("SKU-9", 6)}


async def test_failing_events_in_a_row_are_dead_lettered_by_the_relay_and_the_rest_flows(
    api: httpx.AsyncClient, stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    working = views.HANDLERS[StockLevelChanged]

    def broken(session: Session, envelope: Envelope, event: Event) -> bool:
        if isinstance(event, StockLevelChanged) and (event.sku, event.on_hand) in FAILING:
            raise RuntimeError(f"the stock view cannot take {event.sku} at {event.on_hand}")
        return working(session, envelope, event)

    handlers: dict[type[Event], views.Handler] = views.HANDLERS
    stock_event: type[Event] = StockLevelChanged
    monkeypatch.setitem(handlers, stock_event, broken)
    for on_hand in (7, 6, 5):
        stock(stores, {"us-east": {"SKU-9": on_hand}})

    elsewhere = {region: stores[region] for region in ("eu-west", "ap-south")}
    settled: Level = (5, 0)
    await converge(elsewhere, stock_of("us-east", "SKU-9"), settled)
    caught_up = await _until_caught_up(api)
    metrics = (await api.get("/metrics")).text

    for region in elsewhere:
        letters = (await api.get(f"/regions/{region}/dead-letters")).json()
        assert sorted(letter["error"] for letter in letters) == [
            "RuntimeError: the stock view cannot take SKU-9 at 6",
            "RuntimeError: the stock view cannot take SKU-9 at 7",
        ]
        [pair] = [s for s in caught_up[region]["sources"] if s["source"] == "us-east"]
        waiting = [pair[part] for part in ("undelivered_events", "held_events", "failing_events")]
        assert pair["dead_lettered"] == 2
        assert waiting == [0, 0, 0]
    for gauge in ("undelivered_events", "held_events", "failing_events"):
        assert (
            f'geosaga_replication_{gauge}{{destination="eu-west",source="us-east"}} 0.0' in metrics
        )


async def test_a_quiet_relay_sweeps_what_waits_in_its_destinations_inbox(
    stores: dict[str, Store], cluster: Cluster
) -> None:
    """An event that failed once, which the relay will not deliver again (it restarted past
    it), is applied by the relay's sweep while its source writes nothing."""
    event = StockLevelChanged(region="us-east", sku="SKU-7", on_hand=3, reserved=0, cause="t")
    left = Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event.type,
        schema_version=event.version,
        aggregate_type=event.aggregate,
        aggregate_id=event.sku,
        sequence=1,
        source_region="us-east",
        hlc=Timestamp(wall_ms(), 0, "us-east").encode(),
        payload=event.model_dump(mode="json"),
        outbox_id=1,
        created_at=datetime.now(UTC),
    )
    with stores["eu-west"].transaction() as session:
        session.add(
            InboxEvent(
                **kept(left), sequence=1, attempts=1, last_error="RuntimeError: passing trouble"
            )
        )

    applied: Level = (3, 0)
    await converge({"eu-west": stores["eu-west"]}, stock_of("us-east", "SKU-7"), applied)


async def _until_dead_lettered(api: httpx.AsyncClient, region: str) -> list[dict[str, Any]]:
    for _ in range(300):
        letters: list[dict[str, Any]] = (await api.get(f"/regions/{region}/dead-letters")).json()
        if letters:
            return letters
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing was dead-lettered in {region}")


async def _geosaga(settings: Settings, *args: str) -> str:
    env = {**os.environ, "GEOSAGA_DATABASE_URL_TEMPLATE": settings.database_url_template}
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
    assert await process.wait() == 0, output.decode()
    return " ".join(output.decode().split())


async def test_relays_run_at_their_destination_and_one_started_on_the_shared_queue_moves(
    client: Client, settings: Settings, stores: dict[str, Store], cluster: Cluster
) -> None:
    relays = {relay_id(r): r for source in stores for r in relays_from(settings, source)}
    placed = {
        relay: (await client.get_workflow_handle(relay).describe()).task_queue for relay in relays
    }
    moving = relays_from(settings, "us-east")[0]
    handle = client.get_workflow_handle(relay_id(moving))
    await handle.terminate("started again as an earlier version did")
    # Where relays ran before they moved: the shared workflow queue.
    await client.start_workflow(
        Relay.run, moving, id=relay_id(moving), task_queue=settings.workflow_task_queue
    )
    await _until_placed(handle, moving.destination_queue)
    stock(stores, {"us-east": {"SKU-5": 3}})
    await converge(stores, stock_views, {("us-east", "SKU-5"): (3, 0)})

    # The batch is in eu-west's views a moment before the workflow task that applied it ends.
    history = await _until_applied(handle)

    assert placed == {relay: relays[relay].destination_queue for relay in relays}
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id  # the run on the shared queue handed over
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    # The batch was read in us-east and applied in eu-west's own workflow task.
    assert set(scheduled) == {ActivityName.READ_OUTBOX}
    assert _local_activities(history)[0] == ActivityName.REPLICATION_CURSOR


async def _until_applied(handle: WorkflowHandle[Any, Any]) -> WorkflowHistory:
    for _ in range(300):
        history = await handle.fetch_history()
        if ActivityName.APPLY_EVENTS in _local_activities(history):
            return history
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} never applied a batch in its own workflow task")


def _local_activities(history: WorkflowHistory) -> list[str]:
    """The types of the local activities a history ran, from their markers."""
    types = []
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_local_activity":
            types.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    return types


async def _until_placed(handle: WorkflowHandle[Any, Any], queue: str) -> None:
    for _ in range(300):
        run = await handle.describe()
        if run.task_queue == queue and run.status == WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} never moved to {queue}")
