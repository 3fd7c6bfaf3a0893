"""Applying relayed events: once each, in order per aggregate, held back or dead-lettered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from regions import replication, views
from regions.events import Envelope, Event, StockLevelChanged
from regions.hlc import Timestamp
from regions.models import DeadLetter, StockView
from regions.store import Store

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def level(sequence: int, on_hand: int, sku: str = "SKU-1", wall_ms: int = 0) -> Envelope:
    """A StockLevelChanged from ap-south, as a relay delivers it."""
    event = StockLevelChanged(region="ap-south", sku=sku, on_hand=on_hand, reserved=0, cause="test")
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event.type,
        schema_version=event.version,
        aggregate_type=event.aggregate,
        aggregate_id=sku,
        sequence=sequence,
        source_region="ap-south",
        hlc=Timestamp(1_700_000_000_000 + (wall_ms or sequence), 0, "ap-south").encode(),
        payload=event.model_dump(mode="json"),
        outbox_id=sequence,
        created_at=datetime.now(UTC),
    )


def seen(store: Store) -> dict[str, int]:
    with store.reading() as session:
        return {v.sku: v.on_hand for v in session.exec(select(StockView))}


def test_an_event_waits_for_its_predecessor(stores: dict[str, Store]) -> None:
    store = stores["eu-west"]
    first, second, third = level(1, 5), level(2, 4), level(3, 3)

    early = replication.apply_batch(store, [third, second], max_attempts=3)
    assert (early.applied, early.held_back) == (0, 2)
    assert seen(store) == {}

    late = replication.apply_batch(store, [first], max_attempts=3)
    assert late.applied == 3
    assert seen(store) == {"SKU-1": 3}


def test_a_redelivered_batch_applies_nothing_twice(stores: dict[str, Store]) -> None:
    store = stores["eu-west"]
    batch = [level(1, 5), level(2, 4), level(1, 5, sku="SKU-2")]

    once = replication.apply_batch(store, batch, max_attempts=3)
    again = replication.apply_batch(store, batch, max_attempts=3)

    assert (once.applied, once.duplicates) == (3, 0)
    assert (again.applied, again.duplicates) == (0, 3)
    [source] = replication.sources(store)
    assert (source.applied, source.duplicates, source.delivered_through) == (3, 3, 2)


def test_a_poison_event_is_dead_lettered_after_its_attempts_and_redriven_after_a_fix(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores["us-east"]

    poison, after = level(1, 5), level(2, 4)
    working = views.HANDLERS[StockLevelChanged]

    def broken(session: Session, envelope: Envelope, event: Event) -> bool:
        if envelope.event_id == poison.event_id:
            raise RuntimeError("a bug in the stock view")
        return working(session, envelope, event)

    handlers: dict[type[Event], views.Handler] = views.HANDLERS
    stock_event: type[Event] = StockLevelChanged
    monkeypatch.setitem(handlers, stock_event, broken)
    for _ in range(2):
        with pytest.raises(replication.ApplyFailed, match="a bug in the stock view"):
            replication.apply_batch(store, [poison, after], max_attempts=3)
    third = replication.apply_batch(store, [poison, after], max_attempts=3)

    [letter] = replication.dead_letters(store)
    assert (letter.event_id, letter.attempts) == (poison.event_id, 3)
    assert "a bug in the stock view" in letter.error
    assert third.dead_lettered == 1

    # The aggregate moved on without it.
    assert seen(store) == {"SKU-1": 4}
    monkeypatch.undo()  # the fix is deployed
    assert replication.redrive(store, poison.event_id)
    # The late event is older by the clock, so it does not overwrite the newer level.
    assert seen(store) == {"SKU-1": 4}
    with store.reading() as session:
        assert session.exec(select(DeadLetter)).all() == []
    assert not replication.redrive(store, poison.event_id)


def test_an_event_from_a_newer_schema_is_dead_lettered_not_misread(
    stores: dict[str, Store],
) -> None:
    store = stores["us-east"]
    future = level(1, 5).model_copy(update={"schema_version": 99})

    with pytest.raises(replication.ApplyFailed, match="newer than this code"):
        replication.apply_batch(store, [future], max_attempts=2)
    last = replication.apply_batch(store, [future], max_attempts=2)

    assert last.dead_lettered == 1

    assert [letter.event_id for letter in replication.dead_letters(store)] == [future.event_id]
