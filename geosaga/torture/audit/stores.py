"""Reading every region's store as it stands after the run: stock, reservations, the outbox,
views, carts, dead letters, the replication counters and what is still to replicate."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlmodel import col, select

from geosaga.torture.audit.evidence import Event, Letter, Level, Region, Reservation
from geosaga.torture.audit.record import RunRecord
from regions import carts
from regions.models import (
    CartOperation,
    DeadLetter,
    InboxEvent,
    OrderView,
    OutboxEvent,
    ProcessedEvent,
    ReplicationSource,
    ReservationLine,
    Stock,
    StockView,
)
from regions.models import Reservation as ReservationRow
from regions.store import Store


def read_regions(run: RunRecord, redriven: Mapping[str, Mapping[str, Any]]) -> dict[str, Region]:
    """Every region's store; `redriven` names, per region, the events the operator re-drove
    there (their processed-event rows tell which region each came from)."""
    stores = {name: Store(name, url) for name, url in run.stores.items()}
    try:
        customers = sorted(set().union(*(_customers(store) for store in stores.values())))
        window_ms = int(run.settings.cart_removal_window_seconds * 1000)
        return {
            name: _region(stores, name, customers, window_ms, redriven.get(name, {}).keys())
            for name in stores
        }
    finally:
        for store in stores.values():
            store.dispose()


def _customers(store: Store) -> set[str]:
    with store.reading() as session:
        return set(session.exec(select(CartOperation.customer_id).distinct()))


def _region(
    stores: Mapping[str, Store],
    name: str,
    customers: Iterable[str],
    window_ms: int,
    redriven: Collection[str],
) -> Region:
    store = stores[name]
    with store.reading() as session:
        stock = {row.sku: Level(row.on_hand, row.reserved) for row in session.exec(select(Stock))}
        lines: dict[str, dict[str, int]] = {}
        for line in session.exec(select(ReservationLine)):
            lines.setdefault(line.reservation_key, {})[line.sku] = line.quantity
        reservations = [
            Reservation(row.key, row.order_id, str(row.status), lines.get(row.key, {}))
            for row in session.exec(select(ReservationRow))
        ]
        outbox = [
            Event(
                row.id or 0,
                row.event_id,
                row.event_type,
                row.aggregate_type,
                row.aggregate_id,
                json.loads(row.payload),
            )
            for row in session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id)))
        ]
        order_views = {v.order_id: (v.status, v.reason) for v in session.exec(select(OrderView))}
        stock_views = {
            (v.region, v.sku): Level(v.on_hand, v.reserved) for v in session.exec(select(StockView))
        }
        letters = [
            Letter(
                row.event_id,
                row.source_region,
                row.event_type,
                row.aggregate_type,
                row.aggregate_id,
                row.error,
            )
            for row in session.exec(select(DeadLetter))
        ]
        sources = list(session.exec(select(ReplicationSource)))
        inbox = len(session.exec(select(InboxEvent.event_id)).all())
        applied = {
            row.event_id: row.source_region
            for row in session.exec(
                select(ProcessedEvent).where(col(ProcessedEvent.event_id).in_(list(redriven)))
            )
        }
    return Region(
        name=name,
        stock=stock,
        reservations=reservations,
        outbox=outbox,
        order_views=order_views,
        stock_views=stock_views,
        carts={c: carts.read(store, c, window_ms).items for c in customers},
        letters=letters,
        dead_lettered={row.source_region: row.dead_lettered for row in sources},
        lag=behind(stores, name),
        inbox=inbox,
        redriven=applied,
    )


def behind(stores: Mapping[str, Store], destination: str) -> dict[str, int]:
    """Source region → its events `destination` has not applied: past what the relay has
    delivered there, or delivered and waiting in its inbox (read from both ends' tables, not
    from the service's own lag figures)."""
    with stores[destination].reading() as session:
        delivered = {
            row.source_region: row.delivered_through
            for row in session.exec(select(ReplicationSource))
        }
        waiting: dict[str, int] = {}
        for source in session.exec(select(InboxEvent.source_region)):
            waiting[source] = waiting.get(source, 0) + 1
    found = {}
    for source, store in stores.items():
        if source == destination:
            continue  # a region's own events reach its views as they are written
        with store.reading() as session:
            after = col(OutboxEvent.id) > delivered.get(source, 0)
            undelivered = len(session.exec(select(OutboxEvent.id).where(after)).all())
        found[source] = undelivered + waiting.get(source, 0)
    return found
