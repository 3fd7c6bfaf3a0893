"""How far behind each region's replication is: per source, what waits undelivered in the
source's outbox, held or failing in this region's inbox, and how old the oldest of it is. An
event counts as lag until it is applied or dead-lettered, not only while it lies past the
relay's cursor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, func, select

from regions.models import (
    DeadLetter,
    InboxEvent,
    OutboxEvent,
    ReplicationSource,
    age_seconds,
    utcnow,
)
from regions.store import Store


@dataclass(frozen=True)
class PairStatus:
    """How far one source region's events are applied in one destination region."""

    source: str
    destination: str
    delivered_through: int
    # undelivered + held + failing, and the age of the oldest of them (0 when caught up)
    lag_events: int
    lag_seconds: float
    applied: int
    duplicates: int
    held_back: int
    conflicts_detected: int
    conflicts_resolved: int
    dead_lettered: int
    undelivered_events: int
    held_events: int
    failing_events: int


@dataclass(frozen=True)
class _Waiting:
    held: int = 0
    failing: int = 0
    oldest: datetime | None = None


def status(stores: Mapping[str, Store], destination: str) -> list[PairStatus]:
    """Every source's lag and counters at `destination`, reading both ends' stores."""
    with stores[destination].reading() as session:
        counters = {row.source_region: row for row in session.exec(select(ReplicationSource))}
        rows = session.exec(
            select(
                InboxEvent.source_region,
                func.count(),
                func.count(col(InboxEvent.last_error)),
                # Rows from before revision 0004 know only when they were received.
                func.min(func.coalesce(InboxEvent.created_at, InboxEvent.received_at)),
            ).group_by(col(InboxEvent.source_region))
        )
        waiting = {
            source: _Waiting(held=count - failing, failing=failing, oldest=oldest)
            for source, count, failing, oldest in rows
        }
    now = utcnow()
    pairs = []
    for source, store in stores.items():
        if source == destination:
            continue  # a region's own events reach its read models as they are written
        row = counters.get(source) or ReplicationSource(source_region=source)
        with store.reading() as session:
            undelivered, oldest = session.exec(
                select(func.count(), func.min(OutboxEvent.created_at)).where(
                    col(OutboxEvent.id) > row.delivered_through
                )
            ).one()
        inbox = waiting.get(source, _Waiting())
        ages = [age_seconds(now, then) for then in (oldest, inbox.oldest) if then is not None]
        pairs.append(
            PairStatus(
                source=source,
                destination=destination,
                delivered_through=row.delivered_through,
                lag_events=int(undelivered) + inbox.held + inbox.failing,
                lag_seconds=max(ages, default=0.0),
                applied=row.applied,
                duplicates=row.duplicates,
                held_back=row.held_back,
                conflicts_detected=row.conflicts_detected,
                conflicts_resolved=row.conflicts_resolved,
                dead_lettered=row.dead_lettered,
                undelivered_events=int(undelivered),
                held_events=inbox.held,
                failing_events=inbox.failing,
            )
        )
    return pairs


def dead_letter_depth(store: Store) -> int:
    with store.reading() as session:
        return int(session.exec(select(func.count()).select_from(DeadLetter)).one())
