"""Read models built only from replicated events: every region's view of orders and stock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlmodel import Session, SQLModel, col, select

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
from regions.unavailable import store_failure
from regions.values import SagaStatus

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
V = TypeVar("V", bound=SQLModel)

# Where a transaction keeps the rows of the events it published, in `Session.info`.
_PUBLISHED = "geosaga_published"
# Where a batch keeps the views it read up front (and made since), in `Session.info`.
_LOADED = "geosaga_loaded_views"

# Returns True when the event was concurrent with what the region already knew (a conflict).
Handler = Callable[[Session, Envelope, Event], bool]


def publish(session: Session, region: str, event: Event, aggregate_id: str) -> None:
    """Adds a local write's event to the outbox for the other regions; this region's read models
    get it when the transaction commits (`apply_local`), never through a relay to itself."""
    row = record_event(session, region, event, aggregate_id)
    session.info.setdefault(_PUBLISHED, []).append(row)


def apply_local(session: Session) -> None:
    """Applies the transaction's own events to its region's read models, all in one savepoint,
    or one by one if that fails; every Store session runs it before it commits (regions/store.py).

    A failure never undoes the write: the other regions still get the event, and only this
    region's view waits, in the dead-letter table, for an operator to re-drive it after a fix.
    """
    rows = [row for row in session.info.pop(_PUBLISHED, []) if row in session]
    if not rows:
        return
    session.flush()
    local = [envelope(row) for row in rows]
    try:
        with session.begin_nested():
            for one in local:
                apply(session, one)
        return
    except Exception as error:
        if store_failure(error):
            raise  # not the events' fault: the write fails whole, and nothing is kept
    for one in local:  # find which: each again, alone
        try:
            with session.begin_nested():
                apply(session, one)
        except Exception as error:
            if store_failure(error):
                raise
            log.exception("%s %s not applied to its region's views", one.event_type, one.event_id)
            session.add(dead_letter(one, 1, f"{type(error).__name__}: {error}"))


def apply(session: Session, envelope: Envelope) -> bool:
    """Applies one event to the read models; True if it conflicted with a concurrent write."""
    event = envelope.read()
    handler = HANDLERS.get(type(event))
    return handler(session, envelope, event) if handler else False


def load(session: Session, envelopes: Iterable[Envelope]) -> None:
    """Reads every view a batch of events touches, one query per table, so its events find
    theirs without a query each; views the batch makes are kept too. For a session without
    savepoints: one rolled back would leave stale views here."""
    events = [envelope.read() for envelope in envelopes]
    orders = {e.order_id for e in events if isinstance(e, OrderEvent)}
    stock = {(e.region, e.sku) for e in events if isinstance(e, StockLevelChanged)}
    loaded: dict[tuple[type[SQLModel], Any], SQLModel | None] = {}
    loaded.update({(OrderView, key): None for key in orders})
    loaded.update({(StockView, key): None for key in stock})
    if orders:
        found = session.exec(select(OrderView).where(col(OrderView.order_id).in_(orders)))
        loaded.update({(OrderView, view.order_id): view for view in found})
    if stock:
        found_stock = session.exec(
            select(StockView).where(
                col(StockView.region).in_({region for region, _ in stock}),
                col(StockView.sku).in_({sku for _, sku in stock}),
            )
        )
        loaded.update({(StockView, (view.region, view.sku)): view for view in found_stock})
    session.info[_LOADED] = loaded


def _view(session: Session, model: type[V], key: Any, new: Callable[[], V]) -> V:
    loaded = session.info.get(_LOADED)
    if loaded is not None and (model, key) in loaded:
        view = loaded[(model, key)]
    else:
        view = session.get(model, key)
    view = view or new()
    if loaded is not None:
        loaded[(model, key)] = view
    return view


def _order(session: Session, envelope: Envelope, event: Event) -> bool:
    assert isinstance(event, OrderEvent)
    view = _view(
        session,
        OrderView,
        event.order_id,
        lambda: OrderView(order_id=event.order_id, status=SagaStatus.RUNNING, status_hlc=""),
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
    # The status has several writers (every region the order touches). An order only moves
    # forward, so its outcome beats every step's event whatever their clocks say (a step's
    # region may run ahead of the home region's clock); among equals the later clock wins.
    ended = isinstance(event, OrderEnded)
    if (ended, envelope.hlc) > (view.status != SagaStatus.RUNNING, view.status_hlc):
        view.status = event.status if isinstance(event, OrderEnded) else SagaStatus.RUNNING
        view.reason = event.reason if isinstance(event, OrderEnded) else None
        view.status_hlc = envelope.hlc
    view.regions = json.dumps(sorted(regions))
    view.version_vector = json.dumps(merge_vectors(known, incoming), sort_keys=True)
    view.updated_at = utcnow()
    session.add(view)
    return conflict


def _stock(session: Session, envelope: Envelope, event: Event) -> bool:
    assert isinstance(event, StockLevelChanged)
    view = _view(
        session,
        StockView,
        (event.region, event.sku),
        lambda: StockView(region=event.region, sku=event.sku, on_hand=0, reserved=0, hlc=""),
    )
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
