"""However a relay delivers a stream — out of order, twice, in pieces, through a failing
handler — the views end as if each event had arrived once, in order.

A clean batch is applied whole and anything else falls back to event-by-event savepoints
(regions/replication.py); this checks both paths against one in-order delivery.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from regions import replication, views
from regions.events import Envelope, Event, Line, StockLevelChanged, StockReserved
from regions.hlc import Timestamp
from regions.models import InboxEvent, OrderView, ProcessedEvent, StockView
from regions.store import Store

SKUS = ("SKU-1", "SKU-2")
ORDERS = ("o-1", "o-2")


def stream(kinds: list[int]) -> list[Envelope]:
    """ap-south's outbox: stock levels and reservations, sequenced per aggregate."""
    sequences: dict[str, int] = {}
    envelopes = []
    for outbox_id, kind in enumerate(kinds, start=1):
        event: Event
        if kind < len(SKUS):
            sku = SKUS[kind]
            event = StockLevelChanged(
                region="ap-south", sku=sku, on_hand=100 - outbox_id, reserved=outbox_id, cause="t"
            )
            aggregate = sku
        else:
            order = ORDERS[kind - len(SKUS)]
            event = StockReserved(
                region="ap-south", order_id=order, lines=[Line(sku="SKU-1", quantity=outbox_id)]
            )
            aggregate = order
        sequences[aggregate] = sequences.get(aggregate, 0) + 1
        envelopes.append(
            Envelope(
                event_id=str(uuid.uuid4()),
                event_type=event.type,
                schema_version=event.version,
                aggregate_type=event.aggregate,
                aggregate_id=aggregate,
                sequence=sequences[aggregate],
                source_region="ap-south",
                hlc=Timestamp(1_700_000_000_000 + outbox_id, 0, "ap-south").encode(),
                version_vector={"ap-south": sequences[aggregate]}
                if isinstance(event, StockReserved)
                else None,
                payload=event.model_dump(mode="json"),
                outbox_id=outbox_id,
                created_at=datetime.now(UTC),
            )
        )
    return envelopes


def state(store: Store) -> dict[str, Any]:
    with store.reading() as session:
        return {
            "stock": sorted(
                (v.region, v.sku, v.on_hand, v.reserved, v.hlc)
                for v in session.exec(select(StockView))
            ),
            "orders": sorted(
                (v.order_id, v.status, v.regions, v.version_vector, v.status_hlc)
                for v in session.exec(select(OrderView))
            ),
            "processed": len(session.exec(select(ProcessedEvent)).all()),
            "inbox": len(session.exec(select(InboxEvent)).all()),
        }


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[Any]:
    opened: list[Store] = []

    def make() -> Store:
        store = Store("eu-west", f"sqlite:///{tmp_path / uuid.uuid4().hex}.db")
        store.create_schema()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.dispose()


class FailsOnce:
    """The views' handlers, failing the first event they meet when `fail` is set."""

    def __init__(self, handlers: dict[type[Event], views.Handler], *, fail: bool) -> None:
        self._handlers = handlers
        self._failing = fail

    def __call__(self, session: Session, envelope: Envelope, event: Event) -> bool:
        if self._failing:
            self._failing = False
            raise RuntimeError("a handler that fails once")
        return self._handlers[type(event)](session, envelope, event)


deliveries = st.lists(
    st.tuples(
        st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8),
        st.booleans(),  # whether this delivery meets a handler that fails once
    ),
    max_size=6,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=12),
    batches=deliveries,
)
def test_any_delivery_converges_to_the_in_order_result(
    fresh_store: Any,
    monkeypatch: pytest.MonkeyPatch,
    kinds: list[int],
    batches: list[tuple[list[int], bool]],
) -> None:
    events = stream(kinds)
    expected_store = fresh_store()
    replication.apply_batch(expected_store, events, max_attempts=100)
    expected = state(expected_store)
    assert expected["processed"] == len(events)
    assert expected["inbox"] == 0

    store = fresh_store()
    working = dict(views.HANDLERS)
    for picks, flaky in batches:
        batch = [events[i % len(events)] for i in picks]
        handler = FailsOnce(working, fail=flaky)
        for kind in working:
            monkeypatch.setitem(views.HANDLERS, kind, handler)
        with contextlib.suppress(replication.ApplyFailed):  # delivered again later
            replication.apply_batch(store, batch, max_attempts=100)
        monkeypatch.undo()
    # In the end the relay delivers the whole stream, in order.
    replication.apply_batch(store, events, max_attempts=100)

    assert state(store) == expected
