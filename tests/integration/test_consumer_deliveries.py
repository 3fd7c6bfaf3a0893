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
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from regions import replication, views
from regions.events import Envelope, Event, StockLevelChanged, StockReserved
from regions.hlc import Timestamp
from regions.models import InboxEvent, OrderView, ProcessedEvent, StockView
from regions.store import Store
from regions.values import StockLine

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
                region="ap-south",
                order_id=order,
                lines=[StockLine(sku="SKU-1", quantity=outbox_id)],
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


class Poisoned:
    """The views' handlers, failing every time for the events in `poison`."""

    def __init__(self, handlers: dict[type[Event], views.Handler], poison: set[str]) -> None:
        self._handlers = handlers
        self._poison = poison

    def __call__(self, session: Session, envelope: Envelope, event: Event) -> bool:
        if envelope.event_id in self._poison:
            raise RuntimeError("a handler that always fails for this event")
        return self._handlers[type(event)](session, envelope, event)


ATTEMPTS = 3


@seed(20261205)
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8),
    poison=st.sets(st.integers(min_value=0, max_value=7)),
    cuts=st.sets(st.integers(min_value=1, max_value=7)),
    backwards=st.booleans(),
)
def test_failing_events_are_dead_lettered_and_the_rest_applied_however_they_arrive(
    fresh_store: Any,
    monkeypatch: pytest.MonkeyPatch,
    kinds: list[int],
    poison: set[int],
    cuts: set[int],
    backwards: bool,
) -> None:
    """However many fail, in a row or not, in one batch or several, in order or not: each is
    dead-lettered after its attempts, and the rest end as if delivered once, in order, by a
    relay that dead-letters at the first failure."""
    events = stream(kinds)
    bad = {events[i].event_id for i in poison if i < len(events)}
    edges = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
    batches = [events[start:end] for start, end in pairwise(edges)]
    expected_store, store = fresh_store(), fresh_store()

    with monkeypatch.context() as patched:
        handler = Poisoned(dict(views.HANDLERS), bad)
        for kind in list(views.HANDLERS):
            patched.setitem(views.HANDLERS, kind, handler)
        replication.apply_batch(expected_store, events, max_attempts=1)
        for batch in reversed(batches) if backwards else batches:
            for _ in range(len(events) * ATTEMPTS + 1):  # the relay delivers until it is taken
                try:
                    replication.apply_batch(store, batch, max_attempts=ATTEMPTS)
                    break
                except replication.ApplyFailed:
                    pass
        for _ in range(len(events) * ATTEMPTS):  # the source goes quiet: the relay sweeps
            if not state(store)["inbox"]:
                break
            replication.sweep(store, "ap-south", max_attempts=ATTEMPTS)

    letters = {letter.event_id: letter.attempts for letter in replication.dead_letters(store)}
    assert letters == dict.fromkeys(bad, ATTEMPTS)
    assert state(store) == state(expected_store)
