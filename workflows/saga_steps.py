"""How a saga step runs: its activity on its region's queue, recorded in the saga's step table;
and the rollback a failure before the pivot starts.

`SagaSteps` carries what every step passes alike (the region's task queue, the timeouts and
retry policy from the order's options, the idempotency key) and keeps the table the `state`
query and the Web UI show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar, overload

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.contract import ActivityName, ErrorType, StepOutcome
    from regions.values import Reason, SagaStatus
    from workflows.contract import (
        SAGA_STATUS,
        OrderInput,
        SagaState,
        StepRecord,
        StepStatus,
    )
    from workflows.trace import step_table

R = TypeVar("R", bound=BaseModel)

# Forward steps after the pivot and every compensation retry until they succeed.
FOREVER = 0
CANCELLED = "cancelled before payment was captured"


def is_cancellation(error: BaseException) -> bool:
    """Cancelling a task that awaits an activity surfaces as ActivityError(CancelledError)."""
    if isinstance(error, asyncio.CancelledError | CancelledError):
        return True
    return isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)


class Rollback(Exception):
    """Raised before the pivot when the order cannot go on (out of stock, declined, cancelled):
    the saga compensates what it did and ends with `reason`."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @classmethod
    def after(cls, error: BaseException, reason: Reason, *, cancelled: bool) -> Rollback:
        """The rollback a failed step causes: a cancellation wins over the step's own failure."""
        if cancelled or is_cancellation(error):
            return cls(Reason.CANCELLED, CANCELLED)
        return cls(reason, failure_message(error))


class SagaSteps:
    """The saga's step tables and status, and the one way a forward step runs."""

    def __init__(self, order: OrderInput, state: SagaState) -> None:
        self._order = order
        self._state = state

    @overload
    async def run(
        self,
        name: str,
        region: str,
        detail: str,
        activity: ActivityName,
        request: BaseModel,
        *,
        summary: str,
        schedule_to_close: timedelta | None = None,
    ) -> StepOutcome: ...

    @overload
    async def run(
        self,
        name: str,
        region: str,
        detail: str,
        activity: ActivityName,
        request: BaseModel,
        *,
        summary: str,
        schedule_to_close: timedelta | None = None,
        result_type: type[R],
        per_attempt_limit: bool = True,
    ) -> R: ...

    async def run(
        self,
        name: str,
        region: str,
        detail: str,
        activity: ActivityName,
        request: BaseModel,
        *,
        summary: str,
        schedule_to_close: timedelta | None = None,
        result_type: type[BaseModel] = StepOutcome,
        per_attempt_limit: bool = True,
    ) -> BaseModel:
        """Runs `activity` in `region` as the step `name`, retried by the saga's policy; an
        attempt is limited by the order's activity timeout unless `per_attempt_limit` is off."""
        return await self.tracked(
            self._state.steps,
            name,
            region,
            detail,
            workflow.execute_activity(
                activity,
                request,
                task_queue=self._order.regions[region],
                result_type=result_type,
                start_to_close_timeout=self.run_limit if per_attempt_limit else None,
                schedule_to_close_timeout=schedule_to_close,
                retry_policy=self.retry(),
                summary=summary,
            ),
        )

    @property
    def run_limit(self) -> timedelta:
        return timedelta(seconds=self._order.options.activity_timeout_seconds)

    def key(self, step: str, region: str) -> str:
        """Idempotency key of a step: from the workflow id and the step, never the attempt."""
        return f"{workflow.info().workflow_id}/{step}/{region}"

    def retry(self, *, maximum_attempts: int = FOREVER) -> RetryPolicy:
        options = self._order.options
        return RetryPolicy(
            initial_interval=timedelta(seconds=options.retry_initial_interval_seconds),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=options.retry_maximum_interval_seconds),
            maximum_attempts=maximum_attempts,
            non_retryable_error_types=[
                ErrorType.OUT_OF_STOCK,
                ErrorType.PAYMENT_DECLINED,
                ErrorType.INVALID_TRANSITION,
            ],
        )

    async def tracked(
        self, table: list[StepRecord], name: str, region: str, detail: str, call: Awaitable[R]
    ) -> R:
        record = self.begin(table, name, region, detail)
        try:
            result = await call
        except (Exception, asyncio.CancelledError) as failed:
            cancelled = is_cancellation(failed)
            record.error = None if cancelled else failure_message(failed)
            record.attempts = _attempts_of(failed)
            self.finish(record, StepStatus.CANCELLED if cancelled else StepStatus.FAILED)
            raise
        if isinstance(result, StepOutcome):
            record.attempts = result.attempt
        else:
            record.attempts = 1
        self.finish(record, StepStatus.SUCCEEDED)
        return result

    def begin(self, table: list[StepRecord], name: str, region: str, detail: str) -> StepRecord:
        record = StepRecord(
            name=name,
            region=region,
            status=StepStatus.RUNNING,
            detail=detail,
            started_at=workflow.now(),
        )
        table.append(record)
        self.publish()
        return record

    def finish(self, record: StepRecord, status: StepStatus) -> None:
        record.status = status
        record.finished_at = workflow.now()
        self.publish()

    def set_status(self, status: SagaStatus) -> None:
        if self._state.status != status:
            self._state.status = status
            workflow.upsert_search_attributes([SAGA_STATUS.value_set(status.value)])
        self.publish()

    def publish(self) -> None:
        workflow.set_current_details(step_table(self._state))


def failure_message(error: BaseException) -> str:
    cause: BaseException | None = error
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "timeout"
        return f"timed out ({kind})"
    if isinstance(cause, FailureError):
        return cause.message
    return str(cause)


def _attempts_of(error: BaseException) -> int:
    """A refusal carries the outcome, attempt included; other failures ran at least once."""
    cause = error.cause if isinstance(error, ActivityError) else None
    if isinstance(cause, ApplicationError) and cause.details:
        details = cause.details[0]
        if isinstance(details, dict) and isinstance(details.get("attempt"), int):
            return int(details["attempt"])
    return 0 if is_cancellation(error) else 1
