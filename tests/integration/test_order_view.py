"""Every region's view of an order ends at its outcome, whatever the regions' clocks say."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from regions import replication
from regions.events import Envelope, Event, OrderEnded, StockCommitted
from regions.hlc import Timestamp
from regions.models import OrderView
from regions.store import Store
from regions.values import Allocation, StockLine

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)

_BASE_MS = 1_700_000_000_000


def envelope(event: Event, source: str, wall_ms: int, outbox_id: int) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event.type,
        schema_version=event.version,
        aggregate_type=event.aggregate,
        aggregate_id="o-1",
        sequence=1,
        source_region=source,
        hlc=Timestamp(_BASE_MS + wall_ms, 0, source).encode(),
        payload=event.model_dump(mode="json"),
        outbox_id=outbox_id,
        created_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("outcome_first", [True, False])
def test_the_outcome_wins_over_a_step_stamped_by_a_clock_running_ahead(
    stores: dict[str, Store], outcome_first: bool
) -> None:
    """ap-south's clock runs 40 ms ahead of us-east's: its commit carries a later stamp than the
    outcome us-east records after it. The view must still end at the outcome."""
    commit = envelope(
        StockCommitted(
            region="ap-south", order_id="o-1", lines=[StockLine(sku="SKU-1", quantity=1)]
        ),
        "ap-south",
        wall_ms=50,
        outbox_id=1,
    )
    ended = envelope(
        OrderEnded(
            region="us-east",
            order_id="o-1",
            customer_id="c-1",
            status="completed",
            total=Decimal("12.00"),
            currency="USD",
            allocations=[Allocation(region="ap-south", sku="SKU-1", quantity=1)],
            regions=["ap-south"],
        ),
        "us-east",
        wall_ms=10,
        outbox_id=1,
    )
    store = stores["eu-west"]
    batches = [[ended], [commit]] if outcome_first else [[commit], [ended]]

    for batch in batches:
        replication.apply_batch(store, batch, max_attempts=3)

    with store.reading() as session:
        view = session.get(OrderView, "o-1")
    assert view is not None
    assert (view.status, view.home_region) == ("completed", "us-east")


def test_every_delivery_order_of_an_orders_events_ends_at_its_outcome(
    stores: dict[str, Store],
) -> None:
    events = [
        envelope(
            StockCommitted(
                region=region, order_id="o-1", lines=[StockLine(sku="SKU-1", quantity=1)]
            ),
            region,
            wall_ms=wall,
            outbox_id=1,
        )
        for region, wall in (("ap-south", 90), ("eu-west", 70))
    ]
    events.append(
        envelope(
            OrderEnded(
                region="us-east",
                order_id="o-1",
                customer_id="c-1",
                status="compensated",
                reason="cancelled",
                total=Decimal("1.00"),
                currency="USD",
                allocations=[],
            ),
            "us-east",
            wall_ms=5,
            outbox_id=1,
        )
    )
    for number, order in enumerate(itertools.permutations(events)):
        store = stores["ap-south"] if number % 2 else stores["eu-west"]
        order_id = f"o-{number}"
        for event in order:
            renamed = event.model_copy(
                update={
                    "event_id": str(uuid.uuid4()),
                    "aggregate_id": order_id,
                    "payload": {**event.payload, "order_id": order_id},
                }
            )
            replication.apply_batch(store, [renamed], max_attempts=3)
        with store.reading() as session:
            view = session.get(OrderView, order_id)
        assert view is not None
        assert (view.status, view.reason) == ("compensated", "cancelled"), order
