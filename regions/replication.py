"""Applying another region's events here: once each, in order per aggregate, or dead-lettered.

A relay delivers a source region's outbox at least once and in outbox order. A batch is one
transaction; each event in it is applied together with its processed-event id and its
aggregate's progress, so a redelivery is recognised and skipped (the source's counters are
written once, at the batch's end). An event that arrives before its predecessor (same source,
same aggregate) waits in the inbox until it can follow.

An event whose handler fails waits in the inbox too, its attempt counted in the same
transaction that moves the source's cursor past it, so nothing delivered is ever lost. After
`max_attempts` it moves to the dead-letter table and its aggregate moves on without it: the
events held behind it follow at once, and any of them that fails in turn is counted the same
way, however many fail in a row. An event from a clock too far ahead (ClockDriftError) waits
without spending attempts: the clocks close in as time passes.

`sweep` retries what waits in the inbox once its turn has come, and dead-letters whatever has
waited longer than `hold_seconds` (its predecessor never came, or its clock never closed in),
so the inbox always drains. A batch sweeps its source's inbox after applying, and the relay
sweeps whenever its source is quiet. Applied or dead-lettered, an event's successors never wait.

Lag is read in regions/lag.py. This module is longer than the others on purpose: applying,
holding, sweeping and dead-lettering share one batch's state and one transaction's rules, and
split apart each part would reach into the others' private state.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session, col, func, select

from regions import clock, outbox, views
from regions.events import Envelope
from regions.hlc import ClockDriftError, Timestamp
from regions.models import (
    AggregateProgress,
    DeadLetter,
    InboxEvent,
    ProcessedEvent,
    ReplicationSource,
    age_seconds,
    utcnow,
)
from regions.store import Store

log = logging.getLogger(__name__)

# GEOSAGA_REPLICATION_HOLD_SECONDS's default: how long an event may wait in the inbox.
HOLD_SECONDS = 300.0

# (source region, aggregate type, aggregate id)
AggregateKey = tuple[str, str, str]


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

    def add(self, other: BatchResult) -> None:
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.held_back += other.held_back
        self.dead_lettered += other.dead_lettered
        self.conflicts += other.conflicts
        self.failures += other.failures


@dataclass(frozen=True)
class _Rules:
    max_attempts: int
    hold_seconds: float


# Redrive applies what its letter unblocks and leaves every verdict to the next sweep.
_NEVER_GIVE_UP = _Rules(max_attempts=sys.maxsize, hold_seconds=float("inf"))


def apply_batch(
    store: Store,
    envelopes: list[Envelope],
    *,
    max_attempts: int,
    hold_seconds: float = HOLD_SECONDS,
) -> BatchResult:
    """Applies a relayed batch in order, in one transaction, then sweeps its source's inbox.

    First as a whole: no savepoints, the batch's views and progress read up front, the clock
    moved once. If anything in it fails, that is undone and the batch is applied again event by
    event, each in a savepoint: a failing event is rolled back alone and its attempt counted,
    its successors in its aggregate wait in the inbox, and ApplyFailed asks the relay to deliver
    again. Savepoints are taken only then: they are most of what applying costs.
    """
    rules = _Rules(max_attempts=max_attempts, hold_seconds=hold_seconds)
    try:
        result, waiting, stuck = _apply(store, envelopes, rules, whole=True)
    except Exception as error:
        log.info("a batch from %s needs care: %r", _sources(envelopes), error)
        result, waiting, stuck = _apply(store, envelopes, rules, whole=False)
    for source in sorted(waiting):
        # What failed just now waits for the next delivery or sweep, not a second try at once.
        result.add(_sweep(store, source, rules, utcnow(), skip=stuck))
    if result.failures:
        raise ApplyFailed("; ".join(result.failures))
    return result


def sweep(
    store: Store,
    source_region: str,
    *,
    max_attempts: int,
    hold_seconds: float = HOLD_SECONDS,
    now: datetime | None = None,
) -> BatchResult:
    """Retries the source's events waiting here whose turn has come, and dead-letters those
    that waited longer than `hold_seconds`. Writes nothing when nothing is due."""
    rules = _Rules(max_attempts=max_attempts, hold_seconds=hold_seconds)
    return _sweep(store, source_region, rules, now or utcnow(), skip=frozenset())


def _apply(
    store: Store, envelopes: list[Envelope], rules: _Rules, *, whole: bool
) -> tuple[BatchResult, set[str], set[AggregateKey]]:
    result = BatchResult()
    with store.transaction() as session:
        batch = _Batch.open(session, store.region, envelopes, result, rules, whole=whole)
        for envelope in envelopes:
            _receive(batch, envelope)
        batch.close()
    return result, batch.waiting, batch.stuck


def _sweep(
    store: Store,
    source: str,
    rules: _Rules,
    now: datetime,
    *,
    skip: Collection[AggregateKey],
) -> BatchResult:
    result = BatchResult()
    with store.reading() as session:
        due = _due(session, source, rules, now, skip)
    if not due:
        return result
    with store.transaction() as session:
        batch = _Batch.open(
            session, store.region, [], result, rules, whole=False, names={source}, now=now
        )
        for key in due:
            _drain(batch, key)
        batch.close()
    return result


def _sources(envelopes: list[Envelope]) -> str:
    return ", ".join(sorted({e.source_region for e in envelopes}))


@dataclass
class _Batch:
    """What one transaction's events share, looked up once instead of once per event.

    The sources' counters are kept off the session until the batch ends, so that each event's
    savepoint, which flushes whatever is pending, does not rewrite them. A batch applied
    `whole` has no savepoints: its aggregates' progress is read up front and the clock moves
    once, at the end.
    """

    session: Session
    region: str
    result: BatchResult
    rules: _Rules
    now: datetime
    sources: dict[str, ReplicationSource]
    processed: set[str]
    # Sources with events waiting in the inbox: only they can have held successors.
    waiting: set[str]
    whole: bool = False
    # The events delivered in this batch: only their failures ask for a redelivery.
    own: set[str] = field(default_factory=set)
    # Events that failed in this transaction (each gets one try), and their aggregates.
    tried: set[str] = field(default_factory=set)
    stuck: set[AggregateKey] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    progress: dict[AggregateKey, AggregateProgress] = field(default_factory=dict)
    latest: Timestamp | None = None

    @classmethod
    def open(
        cls,
        session: Session,
        region: str,
        envelopes: list[Envelope],
        result: BatchResult,
        rules: _Rules,
        *,
        whole: bool,
        names: set[str] | None = None,
        now: datetime | None = None,
    ) -> _Batch:
        ids = [e.event_id for e in envelopes]
        names = names or {e.source_region for e in envelopes}
        processed = (
            session.exec(
                select(ProcessedEvent.event_id).where(col(ProcessedEvent.event_id).in_(ids))
            ).all()
            if ids
            else []
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
        batch = cls(
            session,
            region,
            result,
            rules,
            now or utcnow(),
            sources,
            set(processed),
            set(waiting),
            whole,
            own=set(ids),
        )
        if whole:
            batch.progress = _progress_of(session, envelopes)
            views.load(session, envelopes)
        return batch

    def progress_of(self, envelope: Envelope) -> AggregateProgress:
        key = _key(envelope)
        if not self.whole:
            return _progress(self.session, key)
        if key not in self.progress:
            self.progress[key] = _new_progress(key)
        return self.progress[key]

    def close(self) -> None:
        if self.latest is not None:
            clock.observe(self.session, self.region, self.latest)
        for source in self.sources.values():
            self.session.merge(source)


def _progress_of(
    session: Session, envelopes: list[Envelope]
) -> dict[AggregateKey, AggregateProgress]:
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
    """Applies a dead-lettered event again (after a fix); False if there is no such letter.

    Events of its aggregate waiting in the inbox whose turn has come follow it at once."""
    with store.transaction() as session:
        letter = session.get(DeadLetter, event_id, with_for_update=True)
        if letter is None:
            return False
        envelope = Envelope.model_validate_json(letter.envelope)
        source = _source(session, envelope.source_region)
        # Applied meanwhile (two applies raced): only the letter is left to clear.
        if session.get(ProcessedEvent, event_id) is None:
            # Its aggregate moved on without it; merges are by clock, so late is still right.
            conflict = views.apply(session, envelope)
            _observe(session, store.region, envelope)
            session.add(ProcessedEvent(event_id=event_id, source_region=envelope.source_region))
            source.applied += 1
            source.conflicts_detected += conflict
            source.conflicts_resolved += conflict
            session.add(source)
        session.delete(letter)
        remote = envelope.source_region != store.region
        if remote:
            progress = _progress(session, _key(envelope))
            progress.last_sequence = max(progress.last_sequence, envelope.sequence)
            session.add(progress)
    if remote:
        _sweep(store, envelope.source_region, _NEVER_GIVE_UP, utcnow(), skip=())
    return True


def dead_letters(store: Store) -> list[DeadLetter]:
    with store.reading() as session:
        return list(session.exec(select(DeadLetter).order_by(col(DeadLetter.dead_at))))


def sources(store: Store) -> list[ReplicationSource]:
    with store.reading() as session:
        return list(session.exec(select(ReplicationSource)))


def _receive(batch: _Batch, envelope: Envelope) -> None:
    """Applies, holds back or skips one delivered event."""
    session, result = batch.session, batch.result
    source = batch.sources[envelope.source_region]
    source.delivered_through = max(source.delivered_through, envelope.outbox_id)
    source.last_event_created_at = envelope.created_at
    if envelope.event_id in batch.processed or envelope.event_id in batch.dead:
        _duplicate(batch, envelope)
        return
    if envelope.event_id in batch.tried:
        return  # it followed a predecessor out of the inbox and failed: one try a transaction
    progress = batch.progress_of(envelope)
    if envelope.sequence <= progress.last_sequence and _dead_lettered(batch, envelope):
        _duplicate(batch, envelope)
        return
    if envelope.sequence > progress.last_sequence + 1:
        batch.waiting.add(envelope.source_region)
        if session.get(InboxEvent, envelope.event_id) is None:
            session.add(_inbox(envelope, batch.now))
            source.held_back += 1
            result.held_back += 1
        return
    # Next in line; or late, after its aggregate moved on without it (views merge by clock).
    _apply_in_order(batch, envelope, progress)


def _apply_in_order(batch: _Batch, envelope: Envelope, progress: AggregateProgress) -> None:
    """Applies the event, then every held successor it unblocks, until one fails and waits."""
    current: Envelope | None = envelope
    while current is not None and _try(batch, current, progress):
        current = _next_in_turn(batch, _key(current), progress)


def _try(batch: _Batch, envelope: Envelope, progress: AggregateProgress) -> bool:
    """Applies one event; False if it failed and waits. In a `whole` batch a failure is raised
    instead: the batch is applied again with care."""
    session = batch.session
    if batch.whole:
        conflict = views.apply(session, envelope)
        if envelope.source_region != batch.region:
            stamp = Timestamp.decode(envelope.hlc)
            batch.latest = stamp if batch.latest is None else max(batch.latest, stamp)
    else:
        try:
            with session.begin_nested():
                # First: a clock too far ahead fails before any work is done.
                _observe(session, batch.region, envelope)
                conflict = views.apply(session, envelope)
        except Exception as error:
            if _store_trouble(error):
                raise
            return _fail(batch, envelope, progress, error)
    _applied(batch, envelope, progress, conflict)
    return True


def _store_trouble(error: Exception) -> bool:
    """The store failing under the batch (a lost connection, a lock wait past its timeout) is
    no fault of the event's: the whole batch fails and is delivered again, no attempt spent."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _applied(
    batch: _Batch, envelope: Envelope, progress: AggregateProgress, conflict: bool
) -> None:
    session, result = batch.session, batch.result
    session.add(ProcessedEvent(event_id=envelope.event_id, source_region=envelope.source_region))
    batch.processed.add(envelope.event_id)
    if envelope.source_region in batch.waiting:
        held = session.get(InboxEvent, envelope.event_id)
        if held is not None:
            session.delete(held)
    progress.last_sequence = max(progress.last_sequence, envelope.sequence)
    session.add(progress)
    source = batch.sources[envelope.source_region]
    source.applied += 1
    source.conflicts_detected += conflict
    source.conflicts_resolved += conflict
    source.updated_at = utcnow()
    result.applied += 1
    result.conflicts += conflict


def _fail(batch: _Batch, envelope: Envelope, progress: AggregateProgress, error: Exception) -> bool:
    """Counts a failed attempt on the event's inbox row, in the batch's own transaction; True
    if that was its last (it is dead-lettered and its aggregate moves on)."""
    session = batch.session
    message = f"{type(error).__name__}: {error}"
    row = session.get(InboxEvent, envelope.event_id)
    if row is None:
        row = _inbox(envelope, batch.now)
        batch.waiting.add(envelope.source_region)
    # A clock too far ahead closes in as time passes: waiting is no fault of the event's.
    drifting = isinstance(error, ClockDriftError)
    if not drifting:
        row.attempts += 1
    row.last_error = message
    batch.tried.add(envelope.event_id)
    if row.attempts < batch.rules.max_attempts and not _overdue(batch, row):
        session.add(row)
        batch.stuck.add(_key(envelope))
        if envelope.event_id in batch.own and not drifting:
            batch.result.failures.append(f"{envelope.event_type} {envelope.event_id}: {message}")
        return False
    if row in session:
        session.delete(row)
    _dead_letter(batch, envelope, progress, row.attempts, message)
    return True


def _dead_letter(
    batch: _Batch, envelope: Envelope, progress: AggregateProgress, attempts: int, error: str
) -> None:
    """Moves the event to the dead-letter table; its aggregate moves on without it."""
    batch.session.add(outbox.dead_letter(envelope, attempts, error))
    batch.dead.add(envelope.event_id)
    batch.sources[envelope.source_region].dead_lettered += 1
    batch.result.dead_lettered += 1
    progress.last_sequence = max(progress.last_sequence, envelope.sequence)
    batch.session.add(progress)


def _drain(batch: _Batch, key: AggregateKey) -> None:
    """Applies the aggregate's waiting events whose turn has come, and dead-letters the first
    waiting one once it has waited too long for a predecessor that never came."""
    progress = _progress(batch.session, key)
    while (head := _head(batch, key, progress)) is not None and head.event_id not in batch.tried:
        envelope = Envelope.model_validate_json(head.envelope)
        if head.sequence <= progress.last_sequence + 1:
            _apply_in_order(batch, envelope, progress)
            continue
        if not _overdue(batch, head):
            return
        missing = progress.last_sequence + 1
        batch.session.delete(head)
        _dead_letter(
            batch,
            envelope,
            progress,
            head.attempts,
            f"waited {age_seconds(batch.now, head.received_at):.0f} s for sequence {missing} of "
            f"{key[1]} {key[2]} from {key[0]}, which never arrived",
        )


def _next_in_turn(batch: _Batch, key: AggregateKey, progress: AggregateProgress) -> Envelope | None:
    if key[0] not in batch.waiting:
        return None
    head = _head(batch, key, progress)
    if head is None or head.event_id in batch.tried:
        return None
    if head.sequence > progress.last_sequence + 1:
        return None
    return Envelope.model_validate_json(head.envelope)


def _head(batch: _Batch, key: AggregateKey, progress: AggregateProgress) -> InboxEvent | None:
    """The aggregate's first event in the inbox; rows of events already applied or
    dead-lettered (left by two applies that raced, so in turn by now) are cleared on the way."""
    session = batch.session
    while True:
        head = session.exec(
            select(InboxEvent)
            .where(
                InboxEvent.source_region == key[0],
                InboxEvent.aggregate_type == key[1],
                InboxEvent.aggregate_id == key[2],
            )
            .order_by(col(InboxEvent.sequence))
            .limit(1)
        ).first()
        if head is None or head.sequence > progress.last_sequence + 1:
            return head
        if not _settled(batch, head.event_id):
            return head
        session.delete(head)
        batch.result.duplicates += 1


def _settled(batch: _Batch, event_id: str) -> bool:
    if event_id in batch.processed or event_id in batch.dead:
        return True
    session = batch.session
    return (
        session.get(ProcessedEvent, event_id) is not None
        or session.get(DeadLetter, event_id) is not None
    )


def _dead_lettered(batch: _Batch, envelope: Envelope) -> bool:
    # Only asked of an event its aggregate has moved past: a redelivery after it was
    # dead-lettered, or one that never came before (that is applied late).
    return batch.session.get(DeadLetter, envelope.event_id) is not None


def _duplicate(batch: _Batch, envelope: Envelope) -> None:
    batch.sources[envelope.source_region].duplicates += 1
    batch.result.duplicates += 1


def _due(
    session: Session, source: str, rules: _Rules, now: datetime, skip: Collection[AggregateKey]
) -> list[AggregateKey]:
    """The source's aggregates whose first waiting event is in turn, or has waited too long."""
    rows = session.exec(
        select(
            InboxEvent.aggregate_type,
            InboxEvent.aggregate_id,
            func.min(InboxEvent.sequence),
            # Events arrive in order, so the first to arrive is the first in line.
            func.min(InboxEvent.received_at),
        )
        .where(InboxEvent.source_region == source)
        .group_by(col(InboxEvent.aggregate_type), col(InboxEvent.aggregate_id))
    )
    heads = {(source, kind, name): (first, since) for kind, name, first, since in rows}
    progress = _progress_rows(session, source, heads) if heads else {}
    return [
        key
        for key, (first, since) in heads.items()
        if key not in skip
        and (first <= progress.get(key, 0) + 1 or age_seconds(now, since) >= rules.hold_seconds)
    ]


def _progress_rows(
    session: Session, source: str, keys: Iterable[AggregateKey]
) -> dict[AggregateKey, int]:
    keys = list(keys)
    rows = session.exec(
        select(AggregateProgress).where(
            AggregateProgress.source_region == source,
            col(AggregateProgress.aggregate_type).in_({k[1] for k in keys}),
            col(AggregateProgress.aggregate_id).in_({k[2] for k in keys}),
        )
    )
    return {(r.source_region, r.aggregate_type, r.aggregate_id): r.last_sequence for r in rows}


def _overdue(batch: _Batch, row: InboxEvent) -> bool:
    return age_seconds(batch.now, row.received_at) >= batch.rules.hold_seconds


def _observe(session: Session, region: str, envelope: Envelope) -> None:
    """Later local writes order after what they may have seen (ClockDriftError if too far)."""
    if envelope.source_region != region:
        clock.observe(session, region, Timestamp.decode(envelope.hlc))


def _source(session: Session, region: str) -> ReplicationSource:
    return session.get(ReplicationSource, region) or ReplicationSource(source_region=region)


def _key(envelope: Envelope) -> AggregateKey:
    return (envelope.source_region, envelope.aggregate_type, envelope.aggregate_id)


def _progress(session: Session, key: AggregateKey) -> AggregateProgress:
    return session.get(AggregateProgress, key) or _new_progress(key)


def _new_progress(key: AggregateKey) -> AggregateProgress:
    return AggregateProgress(source_region=key[0], aggregate_type=key[1], aggregate_id=key[2])


def _inbox(envelope: Envelope, now: datetime) -> InboxEvent:
    return InboxEvent(
        **outbox.kept(envelope),
        sequence=envelope.sequence,
        created_at=envelope.created_at,
        received_at=now,
    )
