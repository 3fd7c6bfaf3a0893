"""Replication activities: read a region's outbox there, apply its events in another region."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.contract import (
    ActivityName,
    AppliedEvents,
    ApplyEvents,
    CursorRequest,
    OutboxBatch,
    ReadOutbox,
    SweepInbox,
)
from regions import outbox, replication
from regions.models import ReplicationSource
from regions.store import Store

# How often an idle relay looks for events written by another process (the API's carts).
_LOOK_AGAIN = 1.0
# A linger this short goes without a heartbeat: under load a relay lingers before every batch,
# and each heartbeat is a write to Temporal; a cancel then waits for the batch.
_QUIET_PAUSE = 2.0


class ReplicationActivities:
    def __init__(
        self, store: Store, *, max_attempts: int, hold_seconds: float = replication.HOLD_SECONDS
    ) -> None:
        self._store = store
        self._max_attempts = max_attempts
        self._hold_seconds = hold_seconds

    def all(self) -> Sequence[Callable[..., Any]]:
        return [self.read_outbox, self.apply_events, self.sweep_inbox, self.replication_cursor]

    @activity.defn(name=ActivityName.READ_OUTBOX, no_thread_cancel_exception=True)
    def read_outbox(self, request: ReadOutbox) -> OutboxBatch:
        """Waits up to `wait_seconds` for events after the cursor (a long poll).

        Once some arrive it lingers until the oldest is `linger_seconds` old, for a fuller
        batch: under load, a relay then costs Temporal a round trip a second or so instead of
        one per event. It ships sooner once this process has written nothing to the store for
        `settle_seconds`: a quiet region has no fuller batch coming, so its events go at once.
        It sleeps until this process writes to the store (other writers are found by looking
        again every `_LOOK_AGAIN` seconds), so an idle relay costs next to nothing.
        """
        deadline = time.monotonic() + request.wait_seconds
        linger_until: float | None = None
        settled = False
        while True:
            writes = self._store.writes
            with self._store.reading() as session:
                events = outbox.read_after(session, request.after_id, request.limit)
            now = time.monotonic()
            if events and linger_until is None:
                # Lingering counts from the oldest event's write, so a backlog (a region
                # back from a partition) ships at once instead of waiting a linger more.
                age = time.time() - _utc(events[0].created_at).timestamp()
                linger_until = now + max(0.0, request.linger_seconds - age)
            full = len(events) >= request.limit
            lingered = linger_until is not None and (now >= linger_until or settled)
            if full or lingered or now >= deadline or activity.is_cancelled():
                return OutboxBatch(events=events)
            if linger_until is None:
                activity.heartbeat()
                self._store.wait_for_write(writes, min(_LOOK_AGAIN, deadline - now))
                continue
            pause = min(linger_until, deadline) - now
            if pause > _QUIET_PAUSE:
                activity.heartbeat()
            settled = self._settle(writes, pause, request.settle_seconds)

    def _settle(self, writes: int, pause: float, settle: float) -> bool:
        """Sleeps up to `pause`; True as soon as `settle` seconds pass with no write here.

        Looks at the write count once per `settle` rather than waking on every write: a busy
        store commits many times a second."""
        if settle <= 0:
            time.sleep(pause)
            return False
        until = time.monotonic() + pause
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(settle, left))
            if self._store.writes == writes and left >= settle:
                return True
            writes = self._store.writes
        return False

    @activity.defn(name=ActivityName.APPLY_EVENTS, no_thread_cancel_exception=True)
    def apply_events(self, request: ApplyEvents) -> AppliedEvents:
        result = replication.apply_batch(
            self._store,
            request.events,
            max_attempts=self._max_attempts,
            hold_seconds=self._hold_seconds,
        )
        return _applied(result)

    @activity.defn(name=ActivityName.SWEEP_INBOX, no_thread_cancel_exception=True)
    def sweep_inbox(self, request: SweepInbox) -> AppliedEvents:
        """What a quiet source's relay does: the events waiting here get their turn."""
        result = replication.sweep(
            self._store,
            request.source_region,
            max_attempts=self._max_attempts,
            hold_seconds=self._hold_seconds,
        )
        return _applied(result)

    @activity.defn(name=ActivityName.REPLICATION_CURSOR, no_thread_cancel_exception=True)
    def replication_cursor(self, request: CursorRequest) -> int:
        """How far the source's stream is delivered here: where a new relay starts."""
        with self._store.reading() as session:
            source = session.get(ReplicationSource, request.source_region)
        return source.delivered_through if source else 0


def _applied(result: replication.BatchResult) -> AppliedEvents:
    return AppliedEvents(
        applied=result.applied,
        duplicates=result.duplicates,
        held_back=result.held_back,
        dead_lettered=result.dead_lettered,
        conflicts=result.conflicts,
    )


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; the outbox writes UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
