"""Writers of one region racing each other, on SQLite and PostgreSQL: each reads what the one
before it committed, so no write is lost and none fails for its neighbour.

On PostgreSQL (READ COMMITTED) the clock's row is what serialises a region's writers; these
tests hold it, let writers queue behind it in a chosen order, then let them go. SQLite's writers
queue on its write lock, in whatever order: the outcome must be the same.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlmodel import col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contract import ErrorType, ReservationKey, ReserveStock, StepOutcome
from activities.stock import StockActivities
from regions import replication, views
from regions.events import STOCK, Envelope, Event, StockReserved
from regions.hlc import Timestamp, wall_ms
from regions.inventory import StockBelowReserved, set_on_hand
from regions.models import OrderView, OutboxEvent, Reservation, ReservationLine, Stock, utcnow
from regions.store import Store
from regions.values import StockLine
from tests.helpers import writers_held

T = TypeVar("T")
SEED = 4242
REGION = "eu-west"
WAIT_SECONDS = 60.0


@pytest.fixture
def store(eu_west_store: Store) -> Store:
    return eu_west_store


def queued(store: Store, writers: int) -> None:
    """On PostgreSQL, waits until `writers` transactions wait for a lock, so they are let go in
    the order they came; SQLite's writers have no order to wait for."""
    if store.is_sqlite:
        return
    deadline = time.monotonic() + WAIT_SECONDS
    while _lock_waiters(store) < writers:
        assert time.monotonic() < deadline, f"{writers} writers never queued"
        time.sleep(0.02)


def _lock_waiters(store: Store) -> int:
    with store.engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return int(found)


def in_turn(store: Store, pool: ThreadPoolExecutor, writes: Sequence[Callable[[], T]]) -> list[T]:
    """Starts the writes while the writers are held, each queued behind the one before."""
    futures: list[Future[T]] = []
    with writers_held(store):
        for n, write in enumerate(writes, start=1):
            futures.append(pool.submit(write))
            queued(store, n)
    return [future.result(timeout=WAIT_SECONDS) for future in futures]


def relayed(source: str, sequence: int, event: Event, aggregate_id: str) -> Envelope:
    """An event as another region's relay delivers it."""
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event.type,
        schema_version=event.version,
        aggregate_type=event.aggregate,
        aggregate_id=aggregate_id,
        sequence=sequence,
        source_region=source,
        hlc=Timestamp(wall_ms(), 0, source).encode(),
        version_vector={source: sequence},
        payload=event.model_dump(mode="json"),
        outbox_id=sequence,
        created_at=utcnow(),
    )


def reserved_in(region: str, order_id: str) -> StockReserved:
    return StockReserved(region=region, order_id=order_id, lines=[])


def publish_locally(store: Store, event: StockReserved) -> None:
    with store.transaction() as session:
        views.publish(session, store.region, event, event.order_id)


def test_replicated_and_local_writes_to_one_order_view_all_land(store: Store) -> None:
    """An order's view is written by this region's own steps and by every region's relayed
    events; each must merge into what the others committed, not over it."""
    order_id = f"race-{uuid.uuid4().hex[:8]}"
    publish_locally(store, reserved_in(REGION, order_id))  # the view exists already
    writes: list[Callable[[], object]] = [
        lambda: publish_locally(store, reserved_in(REGION, order_id)),
        lambda: replication.apply_batch(
            store,
            [relayed("us-east", 1, reserved_in("us-east", order_id), order_id)],
            max_attempts=3,
        ),
        lambda: replication.apply_batch(
            store,
            [relayed("ap-south", 1, reserved_in("ap-south", order_id), order_id)],
            max_attempts=3,
        ),
    ]

    with ThreadPoolExecutor(len(writes)) as pool:
        in_turn(store, pool, writes)

    with store.reading() as session:
        view = session.get(OrderView, order_id)
    assert view is not None
    assert json.loads(view.regions) == ["ap-south", "eu-west", "us-east"]
    assert json.loads(view.version_vector) == {"ap-south": 1, "eu-west": 2, "us-east": 1}


def test_first_levels_of_a_new_sku_set_at_once_all_land(store: Store) -> None:
    """Setting stock of a SKU this region never stocked makes its row: two at once must not
    both try, and the level left is the last one committed."""
    levels = [3, 7, 11]
    writes = [functools.partial(set_on_hand, store, "SKU-9", level) for level in levels]

    with ThreadPoolExecutor(len(writes)) as pool:
        results = in_turn(store, pool, writes)

    assert sorted(result.on_hand for result in results) == levels
    committed = stock_events(store, "SKU-9")
    assert sorted(event["on_hand"] for event in committed) == levels
    with store.reading() as session:
        row = session.get(Stock, "SKU-9")
    assert row is not None
    assert row.on_hand == committed[-1]["on_hand"]


def stock_events(store: Store, sku: str) -> list[dict[str, Any]]:
    """The SKU's StockLevelChanged events, in the order they were committed."""
    with store.reading() as session:
        rows = session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.aggregate_type == STOCK, OutboxEvent.aggregate_id == sku)
            .order_by(col(OutboxEvent.sequence))
        ).all()
    return [json.loads(row.payload) for row in rows]


def test_stock_set_racing_reservations_and_commits_conserves_every_unit(store: Store) -> None:
    """Operator sets, reservations, releases and commits of one SKU at once, drawn from SEED:
    none fails for another, and the SKU's events, in commit order, tell a story in which
    every change follows from the level before it."""
    rng = random.Random(SEED)
    stock = StockActivities(store)
    sku = "SKU-8"
    start = threading.Barrier(24)

    def operator(level: int) -> Callable[[], object]:
        def run() -> object:
            start.wait()
            try:
                return set_on_hand(store, sku, level)
            except StockBelowReserved as refused:
                return refused

        return run

    def buyer(n: int, quantity: int, then: str) -> Callable[[], object]:
        key = f"order-race-{n}/reserve/{REGION}"

        def run() -> object:
            request = ReserveStock(
                key=key, order_id=f"race-{n}", lines=[StockLine(sku=sku, quantity=quantity)]
            )
            start.wait()
            env = ActivityEnvironment()
            try:
                held: StepOutcome = env.run(stock.reserve_stock, request)
            except ApplicationError as refused:
                return refused
            settle = stock.commit_stock if then == "commit" else stock.release_stock
            return env.run(settle, ReservationKey(key=key, order_id=f"race-{n}")), held

        return run

    writes = [operator(rng.randint(0, 30)) for _ in range(8)]
    writes += [buyer(n, rng.randint(1, 4), rng.choice(["commit", "release"])) for n in range(16)]
    rng.shuffle(writes)
    with ThreadPoolExecutor(len(writes)) as pool:
        results = [f.result(timeout=WAIT_SECONDS) for f in [pool.submit(w) for w in writes]]

    unexpected = [r for r in results if isinstance(r, Exception) and not _business_refusal(r)]
    assert unexpected == []
    quantities = _reserved_quantities(store)
    on_hand, reserved = 0, 0
    for event in stock_events(store, sku):
        cause, order_id = str(event["cause"]), event["order_id"]
        if cause.startswith("adjusted from"):
            assert cause == f"adjusted from {on_hand}"
            on_hand = int(str(event["on_hand"]))
        elif cause == "reserved":
            reserved += quantities[str(order_id)]
        elif cause == "released":
            reserved -= quantities[str(order_id)]
        else:
            assert cause == "committed"
            reserved -= quantities[str(order_id)]
            on_hand -= quantities[str(order_id)]
        assert (event["on_hand"], event["reserved"]) == (on_hand, reserved), event
        assert 0 <= reserved <= on_hand
    with store.reading() as session:
        row = session.get(Stock, sku)
        stamps = session.exec(select(OutboxEvent.hlc).order_by(col(OutboxEvent.id))).all()
    assert row is not None
    assert (row.on_hand, row.reserved) == (on_hand, 0)
    # One clock for every writer, and the outbox in the order they committed (relays read it
    # by id): its timestamps only ever increase.
    assert stamps == sorted(set(stamps))


def _business_refusal(error: Exception) -> bool:
    return isinstance(error, StockBelowReserved | ApplicationError) and (
        not isinstance(error, ApplicationError) or error.type == ErrorType.OUT_OF_STOCK
    )


def _reserved_quantities(store: Store) -> dict[str, int]:
    with store.reading() as session:
        rows = session.exec(
            select(Reservation.order_id, ReservationLine.quantity).join(
                ReservationLine, col(ReservationLine.reservation_key) == Reservation.key
            )
        ).all()
    return {order_id: quantity for order_id, quantity in rows}
