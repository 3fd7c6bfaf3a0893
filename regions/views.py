"""Read models built only from replicated events: every region's view of orders and stock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session

from regions import carts
from regions.events import (
    EVENTS,
    CartChanged,
    Envelope,
    Event,
    OrderEnded,
    OrderEvent,
    PaymentAuthorised,
    PaymentCaptured,
    PaymentDeclined,
    StockLevelChanged,
)
from regions.models import OrderView, StockView, utcnow
from regions.money import to_minor
from regions.outbox import dead_letter, envelope, record_event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

# Returns True when the event was concurrent with what the region already knew (a conflict).
Handler = Callable[[Session, Envelope, Event], bool]


def publish(session: Session, region: str, event: Event, aggregate_id: str) -> None:
    """Adds a local write's event to the outbox for the other regions, and applies it to this
    region's read models in the same transaction. A region has no relay to itself: it was a
    third of replication's cost (BENCHMARKS.md)."""
    row = record_event(session, region, event, aggregate_id)
    session.flush()
    local = envelope(row)
    try:
        with session.begin_nested():
            apply(session, local)
    except Exception as error:
        # The write stands and the other regions still get the event; only this region's
        # view waits, in the dead-letter table, for an operator to re-drive it after a fix.
        log.exception("%s %s not applied to %s's views", local.event_type, local.event_id, region)
        session.add(dead_letter(local, 1, f"{type(error).__name__}: {error}"))


def apply(session: Session, envelope: Envelope) -> bool:
    """Applies one event to the read models; True if it conflicted with a concurrent write."""
    event = envelope.read()
    handler = HANDLERS.get(type(event))
    return handler(session, envelope, event) if handler else False


def _order(session: Session, envelope: Envelope, event: Event) -> bool:
    assert isinstance(event, OrderEvent)
    view = session.get(OrderView, event.order_id) or OrderView(
        order_id=event.order_id, status="running", status_hlc=""
    )
    known = json.loads(view.version_vector)
    incoming = envelope.version_vector or {}
    conflict = concurrent(known, incoming)
    regions = set(json.loads(view.regions))
    if isinstance(event, OrderEnded):
        regions.update(event.regions)
        view.customer_id, view.home_region = event.customer_id, event.region
        view.total_minor, view.currency = to_minor(event.total), event.currency
    elif isinstance(event, PaymentAuthorised | PaymentDeclined | PaymentCaptured):
        view.home_region = event.region
        view.total_minor, view.currency = to_minor(event.amount), event.currency
    else:
        regions.add(event.region)
    # The status has several writers (every region the order touches): the latest write, by
    # hybrid logical clock, wins; an ended order's outcome is written after all its steps.
    if envelope.hlc > view.status_hlc:
        view.status = event.status if isinstance(event, OrderEnded) else "running"
        view.reason = event.reason if isinstance(event, OrderEnded) else None
        view.status_hlc = envelope.hlc
    view.regions = json.dumps(sorted(regions))
    view.version_vector = json.dumps(merge_vectors(known, incoming), sort_keys=True)
    view.updated_at = utcnow()
    session.add(view)
    return conflict


def _stock(session: Session, envelope: Envelope, event: Event) -> bool:
    assert isinstance(event, StockLevelChanged)
    view = session.get(StockView, (event.region, event.sku))
    if view is None:
        view = StockView(region=event.region, sku=event.sku, on_hand=0, reserved=0, hlc="")
    if envelope.hlc > view.hlc:
        view.on_hand, view.reserved, view.hlc = event.on_hand, event.reserved, envelope.hlc
        view.updated_at = utcnow()
        session.add(view)
    return False


def _cart(session: Session, envelope: Envelope, event: Event) -> bool:
    assert isinstance(event, CartChanged)
    return carts.receive(session, event)


HANDLERS: dict[type[Event], Handler] = {
    **{model: _order for model in EVENTS.values() if issubclass(model, OrderEvent)},
    StockLevelChanged: _stock,
    CartChanged: _cart,
}


def concurrent(known: dict[str, int], incoming: dict[str, int]) -> bool:
    """Neither version vector covers the other: the writes did not see each other."""
    if not known or not incoming:
        return False
    regions = known.keys() | incoming.keys()
    ahead = any(incoming.get(r, 0) > known.get(r, 0) for r in regions)
    behind = any(incoming.get(r, 0) < known.get(r, 0) for r in regions)
    return ahead and behind


def merge_vectors(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {r: max(a.get(r, 0), b.get(r, 0)) for r in a.keys() | b.keys()}
