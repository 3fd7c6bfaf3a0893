"""Relays one region's outbox to one region: at least once, in outbox order, forever.

A relay reads a batch on the source region's task queue and applies it on the destination's.
If either region is down its activity waits in the queue, so a partition only delays this one
pair; the other pairs keep flowing. The cursor lives in the workflow and survives
continue-as-new; the destination skips whatever it has already applied.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contract import (
        ActivityName,
        AppliedEvents,
        ApplyEvents,
        CursorRequest,
        OutboxBatch,
        ReadOutbox,
    )
    from workflows.relay_contract import RELAY_WORKFLOW, RelayInput

# Keeps each run's history short; continue-as-new carries the cursor on.
_BATCHES_PER_RUN = 200
_RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


@workflow.defn(name=RELAY_WORKFLOW)
class Relay:
    """Query `cursor`: the last outbox id delivered."""

    def __init__(self) -> None:
        self._cursor = 0

    @workflow.run
    async def run(self, relay: RelayInput) -> None:
        if relay.after_id is None:
            relay.after_id = await workflow.execute_activity(
                ActivityName.REPLICATION_CURSOR,
                CursorRequest(source_region=relay.source),
                task_queue=relay.destination_queue,
                result_type=int,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_RETRY_FOREVER,
                summary=f"where {relay.destination} is in {relay.source}'s events",
            )
        self._cursor = relay.after_id
        for _ in range(_BATCHES_PER_RUN):
            if workflow.info().is_continue_as_new_suggested():
                break
            batch: OutboxBatch = await workflow.execute_activity(
                ActivityName.READ_OUTBOX,
                ReadOutbox(
                    after_id=self._cursor,
                    limit=relay.batch_size,
                    wait_seconds=relay.poll_seconds,
                    linger_seconds=relay.linger_seconds,
                    settle_seconds=relay.settle_seconds,
                ),
                task_queue=relay.source_queue,
                result_type=OutboxBatch,
                start_to_close_timeout=timedelta(seconds=relay.poll_seconds + 30),
                heartbeat_timeout=timedelta(seconds=max(10.0, relay.poll_seconds * 2)),
                retry_policy=_RETRY_FOREVER,
                summary=f"read {relay.source}'s outbox after {self._cursor}",
            )
            if not batch.events:
                continue
            first, last = batch.events[0].outbox_id, batch.events[-1].outbox_id
            await workflow.execute_activity(
                ActivityName.APPLY_EVENTS,
                ApplyEvents(source_region=relay.source, events=batch.events),
                task_queue=relay.destination_queue,
                result_type=AppliedEvents,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=_RETRY_FOREVER,
                summary=f"apply {relay.source} events {first}..{last} in {relay.destination}",
            )
            self._cursor = last
        workflow.continue_as_new(relay.model_copy(update={"after_id": self._cursor}))

    @workflow.query(name="cursor")
    def cursor(self) -> int:
        return self._cursor
