"""Applying another region's events here: once each, in order per aggregate, or dead-lettered.

A relay delivers a source region's outbox at least once and in outbox order. A batch is one
transaction; each event in it is applied together with its processed-event id and its
aggregate's progress, so a redelivery is recognised and skipped (the source's counters are
written once, at the batch's end). An event that arrives
before its predecessor (same source, same aggregate) waits in the inbox until it can follow.
An event whose handler keeps failing is retried with the batch, and after `max_attempts` moves
to the dead-letter table: its aggregate moves on without it, and an operator can re-drive it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, col, func, select

from regions import clock, outbox, views
from regions.events import Envelope
from regions.hlc import Timestamp
from regions.models import (
    AggregateProgress,
    DeadLetter,
    InboxEvent,
    OutboxEvent,
    ProcessedEvent,
    ReplicationSource,
    utcnow,
)
from regions.store import Store

log = logging.getLogger(__name__)


class ApplyFailed(Exception):
    """An event could not be applied and has attempts left: deliver the batch again later."""


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    held_back: int = 0
    dead_lettered: int = 0
    conflicts: int = 0
    failures: list[str] = field(default_factory=list)


def apply_batch(store: Store, envelopes: list[Envelope], *, max_attempts: int) -> BatchResult:
    """Applies a relayed batch in order, in one transaction.

    First as a whole: no savepoints, the batch's views and progress read up front, the clock
    moved once. If anything in it fails, that is undone and the batch is applied again event by
    event, each in a savepoint: a failing event is rolled back alone, its successors in its
    aggregate wait in the inbox, its attempt is counted afterwards, and ApplyFailed asks the
    relay to deliver again. Savepoints were most of applying's cost (BENCHMARKS.md).
    """
    try:
        return _apply(store, envelopes, whole=True)
    except Exception as error:
        log.info("a batch from %s needs care: %r", _sources(envelopes), error)
    result = BatchResult()
    return _apply(store, envelopes, whole=False, result=result, max_attempts=max_attempts)


def _apply(
    store: Store,
    envelopes: list[Envelope],
    *,
    whole: bool,
    result: BatchResult | None = None,
    max_attempts: int = 1,
) -> BatchResult:
    result = result or BatchResult()
    failed: list[tuple[Envelope, Exception]] = []
    with store.transaction() as session:
        batch = _Batch.open(session, store.region, envelopes, result, whole=whole)
        for envelope in envelopes:
            failure = _receive(batch, envelope)
            if failure is not None:
                failed.append((envelope, failure))
        batch.close()
    for envelope, failure in failed:
        _record_failure(store, envelope, failure, result, max_attempts)
    if result.failures:
        raise ApplyFailed("; ".join(result.failures))
    return result


def _sources(envelopes: list[Envelope]) -> str:
    return ", ".join(sorted({e.source_region for e in envelopes}))


@dataclass
class _Batch:
    """What one batch's events share, looked up once instead of once per event.

    The sources' counters are kept off the session until the batch ends: each event's
    savepoint flushes whatever is pending, and a counter row rewritten per event was a third
    of the cost of applying one (BENCHMARKS.md). A batch applied `whole` has no savepoints:
    its aggregates' progress is read up front and the clock moves once, at the end.
    """

    session: Session
    region: str
    result: BatchResult
    sources: dict[str, ReplicationSource]
    processed: set[str]
    # Sources with events waiting in the inbox: only they can have held successors.
    waiting: set[str]
    whole: bool = False
    progress: dict[tuple[str, str, str], AggregateProgress] = field(default_factory=dict)
    latest: Timestamp | None = None

    @classmethod
    def open(
        cls,
        session: Session,
        region: str,
        envelopes: list[Envelope],
        result: BatchResult,
        *,
        whole: bool,
    ) -> _Batch:
        ids = [e.event_id for e in envelopes]
        names = {e.source_region for e in envelopes}
        processed = session.exec(
            select(ProcessedEvent.event_id).where(col(ProcessedEvent.event_id).in_(ids))
        )
        waiting = session.exec(
            select(InboxEvent.source_region)
            .where(col(InboxEvent.source_region).in_(names))
            .distinct()
        )
        sources = {}
        for name in names:
            source = _source(session, name)
            if source in session:
                session.expunge(source)
            sources[name] = source
        batch = cls(session, region, result, sources, set(processed), set(waiting), whole)
        if whole:
            batch.progress = _progress_of(session, envelopes)
            views.load(session, envelopes)
        return batch

    def progress_of(self, envelope: Envelope) -> AggregateProgress:
        if not self.whole:
            return _progress(self.session, envelope)
        key = (envelope.source_region, envelope.aggregate_type, envelope.aggregate_id)
        if key not in self.progress:
            self.progress[key] = AggregateProgress(
                source_region=key[0], aggregate_type=key[1], aggregate_id=key[2]
            )
        return self.progress[key]

    def close(self) -> None:
        if self.latest is not None:
            clock.observe(self.session, self.region, self.latest)
        for source in self.sources.values():
            self.session.merge(source)


def _progress_of(
    session: Session, envelopes: list[Envelope]
) -> dict[tuple[str, str, str], AggregateProgress]:
    # Each column constrained, so the primary key finds the rows (a table of every order).
    rows = session.exec(
        select(AggregateProgress).where(
            col(AggregateProgress.source_region).in_({e.source_region for e in envelopes}),
            col(AggregateProgress.aggregate_type).in_({e.aggregate_type for e in envelopes}),
            col(AggregateProgress.aggregate_id).in_({e.aggregate_id for e in envelopes}),
        )
    )
    return {(r.source_region, r.aggregate_type, r.aggregate_id): r for r in rows}


def redrive(store: Store, event_id: str) -> bool:
    """Applies a dead-lettered event again (after a fix); False if there is no such letter."""
    with store.transaction() as session:
        letter = session.get(DeadLetter, event_id)
        if letter is None:
            return False
        envelope = Envelope.model_validate_json(letter.envelope)
        source = _source(session, envelope.source_region)
        # Its aggregate moved on without it; merges are by clock, so late is still right.
        conflict = views.apply(session, envelope)
        _observe(session, store.region, envelope)
        session.add(
            ProcessedEvent(event_id=envelope.event_id, source_region=envelope.source_region)
        )
        session.delete(letter)
        source.applied += 1
        source.conflicts_detected += conflict
        source.conflicts_resolved += conflict
        session.add(source)
    return True


def dead_letters(store: Store) -> list[DeadLetter]:
    with store.reading() as session:
        return list(session.exec(select(DeadLetter).order_by(col(DeadLetter.dead_at))))


def sources(store: Store) -> list[ReplicationSource]:
    with store.reading() as session:
        return list(session.exec(select(ReplicationSource)))


def _receive(batch: _Batch, envelope: Envelope) -> Exception | None:
    """Applies, holds back or skips one event; returns its handler's failure, if any."""
    session, result = batch.session, batch.result
    source = batch.sources[envelope.source_region]
    source.delivered_through = max(source.delivered_through, envelope.outbox_id)
    source.last_event_created_at = envelope.created_at
    if envelope.event_id in batch.processed:
        source.duplicates += 1
        result.duplicates += 1
        return None
    progress = batch.progress_of(envelope)
    if envelope.sequence <= progress.last_sequence:
        source.duplicates += 1
        result.duplicates += 1
        return None
    if envelope.sequence > progress.last_sequence + 1:
        batch.waiting.add(envelope.source_region)
        if session.get(InboxEvent, envelope.event_id) is None:
            session.add(_inbox(envelope))
            source.held_back += 1
            result.held_back += 1
        return None
    failure = _apply_in_order(
        session,
        batch.region,
        envelope,
        progress,
        source,
        result,
        inbox=envelope.source_region in batch.waiting,
        whole=batch if batch.whole else None,
    )
    if failure is None:
        batch.processed.add(envelope.event_id)
    return failure


def _apply_in_order(
    session: Session,
    region: str,
    envelope: Envelope,
    progress: AggregateProgress,
    source: ReplicationSource,
    result: BatchResult,
    *,
    inbox: bool = True,
    whole: _Batch | None = None,
) -> Exception | None:
    """Applies the event, then any held successors it unblocks; returns a handler's failure.

    `inbox=False` says no event of this source waits in the inbox, so none is looked for.
    In a `whole` batch a failure is raised instead: the batch is applied again with care.
    """
    current: Envelope | None = envelope
    while current is not None:
        if whole is not None:
            conflict = views.apply(session, current)
            if current.source_region != region:
                stamp = Timestamp.decode(current.hlc)
                whole.latest = stamp if whole.latest is None else max(whole.latest, stamp)
        else:
            try:
                with session.begin_nested():
                    conflict = views.apply(session, current)
                    _observe(session, region, current)
            except Exception as error:
                return error if current is envelope else None
        _applied(session, current, progress, source, result, conflict, inbox=inbox)
        current = _next_held(session, current) if inbox else None
    return None


def _applied(
    session: Session,
    envelope: Envelope,
    progress: AggregateProgress,
    source: ReplicationSource,
    result: BatchResult,
    conflict: bool,
    *,
    inbox: bool,
) -> None:
    session.add(ProcessedEvent(event_id=envelope.event_id, source_region=envelope.source_region))
    held = session.get(InboxEvent, envelope.event_id) if inbox else None
    if held is not None:
        session.delete(held)
    progress.last_sequence = envelope.sequence
    session.add(progress)
    source.applied += 1
    source.conflicts_detected += conflict
    source.conflicts_resolved += conflict
    source.updated_at = utcnow()
    result.applied += 1
    result.conflicts += conflict


def _next_held(session: Session, envelope: Envelope) -> Envelope | None:
    successor = session.exec(
        select(InboxEvent).where(
            InboxEvent.source_region == envelope.source_region,
            InboxEvent.aggregate_type == envelope.aggregate_type,
            InboxEvent.aggregate_id == envelope.aggregate_id,
            InboxEvent.sequence == envelope.sequence + 1,
        )
    ).first()
    return Envelope.model_validate_json(successor.envelope) if successor else None


def _record_failure(
    store: Store, envelope: Envelope, failure: Exception, result: BatchResult, max_attempts: int
) -> None:
    message = f"{type(failure).__name__}: {failure}"
    with store.transaction() as session:
        inbox = session.get(InboxEvent, envelope.event_id) or _inbox(envelope)
        inbox.attempts += 1
        inbox.last_error = message
        if inbox.attempts < max_attempts:
            session.add(inbox)
            result.failures.append(f"{envelope.event_type} {envelope.event_id}: {message}")
            return
        session.add(outbox.dead_letter(envelope, inbox.attempts, message))
        if session.get(InboxEvent, envelope.event_id) is not None:
            session.delete(inbox)
        source = _source(session, envelope.source_region)
        source.dead_lettered += 1
        result.dead_lettered += 1
        # The aggregate moves on without it, so one bad event does not stop the ones after it.
        progress = _progress(session, envelope)
        progress.last_sequence = envelope.sequence
        session.add(progress)
        following = _next_held(session, envelope)
        if following is not None:
            _apply_in_order(session, store.region, following, progress, source, result)
        session.add(source)


def _observe(session: Session, region: str, envelope: Envelope) -> None:
    """Later local writes order after what they may have seen (ClockDriftError if too far)."""
    if envelope.source_region != region:
        clock.observe(session, region, Timestamp.decode(envelope.hlc))


def _source(session: Session, region: str) -> ReplicationSource:
    return session.get(ReplicationSource, region) or ReplicationSource(source_region=region)


def _progress(session: Session, envelope: Envelope) -> AggregateProgress:
    key = (envelope.source_region, envelope.aggregate_type, envelope.aggregate_id)
    return session.get(AggregateProgress, key) or AggregateProgress(
        source_region=envelope.source_region,
        aggregate_type=envelope.aggregate_type,
        aggregate_id=envelope.aggregate_id,
    )


def _inbox(envelope: Envelope) -> InboxEvent:
    return InboxEvent(**outbox.kept(envelope), sequence=envelope.sequence)


@dataclass(frozen=True)
class PairStatus:
    """How far one source region's events are applied in one destination region."""

    source: str
    destination: str
    delivered_through: int
    lag_events: int
    lag_seconds: float
    applied: int
    duplicates: int
    held_back: int
    conflicts_detected: int
    conflicts_resolved: int
    dead_lettered: int


def status(stores: Mapping[str, Store], destination: str) -> list[PairStatus]:
    """Every source's lag and counters at `destination`, reading both ends' stores."""
    with stores[destination].reading() as session:
        counters = {row.source_region: row for row in session.exec(select(ReplicationSource))}
    now = utcnow()
    pairs = []
    for source, store in stores.items():
        if source == destination:
            continue  # a region's own events reach its read models as they are written
        row = counters.get(source) or ReplicationSource(source_region=source)
        with store.reading() as session:
            pending = session.exec(
                select(func.count(), func.min(OutboxEvent.created_at)).where(
                    col(OutboxEvent.id) > row.delivered_through
                )
            ).one()
        count, oldest = pending
        pairs.append(
            PairStatus(
                source=source,
                destination=destination,
                delivered_through=row.delivered_through,
                lag_events=int(count),
                lag_seconds=_age(now, oldest) if count else 0.0,
                applied=row.applied,
                duplicates=row.duplicates,
                held_back=row.held_back,
                conflicts_detected=row.conflicts_detected,
                conflicts_resolved=row.conflicts_resolved,
                dead_lettered=row.dead_lettered,
            )
        )
    return pairs


def dead_letter_depth(store: Store) -> int:
    with store.reading() as session:
        return int(session.exec(select(func.count()).select_from(DeadLetter)).one())


def _age(now: datetime, then: datetime) -> float:
    if then.tzinfo is None:  # SQLite hands back naive UTC
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())
