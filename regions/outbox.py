"""Writing events to a region's outbox inside the caller's transaction, in their envelope."""

from __future__ import annotations

import json
import uuid
from typing import TypedDict

from sqlmodel import Session, col, select

from regions import clock, locked
from regions.events import MULTI_WRITER, Envelope, Event, dumps
from regions.models import AggregateProgress, AggregateSequence, DeadLetter, OutboxEvent


def record_event(session: Session, region: str, event: Event, aggregate_id: str) -> OutboxEvent:
    """Stamps the event (HLC, per-aggregate sequence, version vector) and adds it to the outbox."""
    stamp = clock.tick(session, region)
    sequence = _next_sequence(session, event.aggregate, aggregate_id)
    vector = None
    if event.aggregate in MULTI_WRITER:
        with session.no_autoflush:  # only relayed events write what it reads
            known = known_versions(session, event.aggregate, aggregate_id)
        vector = {**known, region: sequence}
    row = OutboxEvent(
        event_id=str(uuid.uuid4()),
        event_type=event.type,
        schema_version=event.version,
        aggregate_type=event.aggregate,
        aggregate_id=aggregate_id,
        sequence=sequence,
        source_region=region,
        hlc=stamp.encode(),
        version_vector=json.dumps(vector, sort_keys=True) if vector else None,
        payload=dumps(event),
    )
    session.add(row)
    return row


def known_versions(session: Session, aggregate_type: str, aggregate_id: str) -> dict[str, int]:
    """What this region has applied of an aggregate: a version vector by source region."""
    rows = session.exec(
        select(AggregateProgress).where(
            AggregateProgress.aggregate_type == aggregate_type,
            AggregateProgress.aggregate_id == aggregate_id,
        )
    )
    return {row.source_region: row.last_sequence for row in rows}


def read_after(session: Session, after_id: int, limit: int) -> list[Envelope]:
    rows = session.exec(
        select(OutboxEvent)
        .where(col(OutboxEvent.id) > after_id)
        .order_by(col(OutboxEvent.id))
        .limit(limit)
    )
    return [envelope(row) for row in rows]


def envelope(row: OutboxEvent) -> Envelope:
    assert row.id is not None
    return Envelope(
        event_id=row.event_id,
        event_type=row.event_type,
        schema_version=row.schema_version,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        sequence=row.sequence,
        source_region=row.source_region,
        hlc=row.hlc,
        version_vector=json.loads(row.version_vector) if row.version_vector else None,
        payload=json.loads(row.payload),
        outbox_id=row.id,
        created_at=row.created_at,
    )


def _next_sequence(session: Session, aggregate_type: str, aggregate_id: str) -> int:
    counter = locked.once_per_transaction(
        session,
        ("sequence", aggregate_type, aggregate_id),
        lambda: (
            session.exec(
                select(AggregateSequence)
                .where(
                    AggregateSequence.aggregate_type == aggregate_type,
                    AggregateSequence.aggregate_id == aggregate_id,
                )
                .with_for_update()
            ).first()
            or AggregateSequence(aggregate_type=aggregate_type, aggregate_id=aggregate_id)
        ),
    )
    counter.last_sequence += 1
    session.add(counter)
    return counter.last_sequence


def dead_letter(envelope: Envelope, attempts: int, error: str) -> DeadLetter:
    """An event this region could not apply, kept whole so an operator can re-drive it."""
    return DeadLetter(
        **kept(envelope), event_type=envelope.event_type, attempts=attempts, error=error
    )


class Kept(TypedDict):
    event_id: str
    source_region: str
    aggregate_type: str
    aggregate_id: str
    envelope: str


def kept(envelope: Envelope) -> Kept:
    """What the inbox and the dead-letter table keep of an event: its identity and itself."""
    return Kept(
        event_id=envelope.event_id,
        source_region=envelope.source_region,
        aggregate_type=envelope.aggregate_type,
        aggregate_id=envelope.aggregate_id,
        envelope=envelope.model_dump_json(),
    )
