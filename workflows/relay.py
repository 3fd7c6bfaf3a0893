"""Relays one region's outbox to one region: at least once, in outbox order, forever.

A relay runs on the destination region's task queue, so the destination's worker runs it: it
reads a batch with an activity on the source region's queue and applies it as a local activity,
in the same workflow task that learns of the batch: a batch costs one workflow task and one
activity task. If either region is down, the read waits in the source's queue or the relay's
own tasks wait in the destination's, so a partition only delays this one pair; the other pairs
keep flowing. The cursor lives in the workflow and survives continue-as-new; the destination
skips whatever it has already applied. When a read finds nothing new, the relay sweeps the
destination's inbox of the source's events (regions/replication.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

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
        SweepInbox,
    )
    from workflows.relay_contract import RELAY_WORKFLOW, RelayInput

T = TypeVar("T")

# Relays started on the shared workflow queue apply with an activity on the destination's
# queue; their histories replay on that path, and new runs move to the destination.
PATCH_RUN_AT_DESTINATION = "relay-runs-at-destination"
# A quiet source's relay sweeps the destination's inbox, so what waits there (its turn come
# after a relay restarted past it, a clock that closed in, a predecessor that never came) is
# not left until the source writes again. Earlier histories never swept.
PATCH_SWEEP_WHEN_QUIET = "relay-sweeps-when-quiet"
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
        local = workflow.info().task_queue == relay.destination_queue
        if not local and workflow.patched(PATCH_RUN_AT_DESTINATION):
            workflow.continue_as_new(relay, task_queue=relay.destination_queue)
        if relay.after_id is None:
            relay.after_id = await self._at_destination(
                local,
                ActivityName.REPLICATION_CURSOR,
                CursorRequest(source_region=relay.source),
                relay.destination_queue,
                int,
                timedelta(seconds=30),
                f"where {relay.destination} is in {relay.source}'s events",
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
                if workflow.patched(PATCH_SWEEP_WHEN_QUIET):
                    await self._at_destination(
                        local,
                        ActivityName.SWEEP_INBOX,
                        SweepInbox(source_region=relay.source),
                        relay.destination_queue,
                        AppliedEvents,
                        timedelta(seconds=60),
                        f"sweep {relay.destination}'s inbox of {relay.source}'s events",
                    )
                continue
            first, last = batch.events[0].outbox_id, batch.events[-1].outbox_id
            await self._at_destination(
                local,
                ActivityName.APPLY_EVENTS,
                ApplyEvents(source_region=relay.source, events=batch.events),
                relay.destination_queue,
                AppliedEvents,
                timedelta(seconds=60),
                f"apply {relay.source} events {first}..{last} in {relay.destination}",
            )
            self._cursor = last
        workflow.continue_as_new(relay.model_copy(update={"after_id": self._cursor}))

    async def _at_destination(
        self,
        local: bool,
        name: str,
        arg: Any,
        queue: str,
        result_type: type[T],
        timeout: timedelta,
        summary: str,
    ) -> T:
        """A step in the destination region: in this workflow task when the relay runs there."""
        result: T
        if local:
            result = await workflow.execute_local_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=timeout,
                retry_policy=_RETRY_FOREVER,
                summary=summary,
            )
        else:
            result = await workflow.execute_activity(
                name,
                arg,
                task_queue=queue,
                result_type=result_type,
                start_to_close_timeout=timeout,
                retry_policy=_RETRY_FOREVER,
                summary=summary,
            )
        return result

    @workflow.query(name="cursor")
    def cursor(self) -> int:
        return self._cursor
