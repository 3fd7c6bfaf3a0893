"""A saga's undo retried in rounds until it succeeds, and what operators can do meanwhile.

A round is one activity with its own attempt and time limits (a region that is down ends it).
After a failed round the saga needs attention; the next round starts after a backoff that
doubles up to a cap, or at once when an operator asks for a retry. An operator may also
resolve a stuck void of a payment hold, having released it in the gateway's console.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from workflows.saga_steps import SagaSteps, failure_message

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.contract import ActivityName, StepOutcome
    from regions.values import SagaStatus
    from workflows.contract import (
        OrderInput,
        Resolution,
        ResolveRequest,
        RetryCompensationRequest,
        SagaState,
        StepRecord,
        StepStatus,
    )

# The undo of a payment hold: the only one a person can finish by hand.
VOID = "void"

# Changes to released code paths, each behind workflow.patched so older histories replay.
# Stuck compensations back off further each round and answer operators (retry now, resolve).
PATCH_OPERATOR_ACTIONS = "operator-actions"
# An operator's resolve finishes only payment holds (released in the gateway's console); a
# stuck stock release has no console, so it keeps retrying instead of holding units for good.
PATCH_RESOLVE_HOLDS_ONLY = "resolve-holds-only"


class CompensationRounds:
    """The saga's compensations in rounds, and the operators' retry and resolve."""

    def __init__(self, order: OrderInput, state: SagaState, steps: SagaSteps) -> None:
        self._order = order
        self._state = state
        self._steps = steps
        self._retry_round = 0
        # False while replaying a compensation that began before operators could act on it.
        self._answers_operators = False
        # False while replaying a saga from before a resolve left stock releases alone.
        self._resolves_holds_only = False

    async def run(
        self,
        name: str,
        region: str,
        detail: str,
        activity: ActivityName,
        request: BaseModel,
        summary: str,
    ) -> None:
        """Retries an undo until it succeeds or an operator resolves it."""
        record = self._steps.begin(self._state.compensations, name, region, detail)
        answers_operators = workflow.patched(PATCH_OPERATOR_ACTIONS)
        self._answers_operators = answers_operators
        if answers_operators:
            self._resolves_holds_only = workflow.patched(PATCH_RESOLVE_HOLDS_ONLY)

        def attempt() -> Awaitable[StepOutcome]:
            return self._round(activity, request, region, summary)

        rounds_failed = 0
        while True:
            try:
                if answers_operators:
                    outcome = await self._unless_resolved(record, attempt)
                else:
                    outcome = await attempt()
            except ActivityError as failed:
                record.attempts += _attempts_used(
                    failed, self._order.options.compensation_attempts_before_attention
                )
                record.error = failure_message(failed)
                if failed.retry_state == RetryState.NON_RETRYABLE_FAILURE:
                    self._steps.finish(record, StepStatus.FAILED)
                    raise
                rounds_failed += 1
                record.status = StepStatus.RETRYING
                self._state.message = f"{name} in {region} keeps failing: {record.error}"
                self._steps.set_status(SagaStatus.NEEDS_ATTENTION)
                if answers_operators:
                    await self._before_next_round(record, rounds_failed)
                else:
                    await workflow.sleep(self._order.options.retry_maximum_interval_seconds)
                continue
            if outcome is None:
                self._steps.finish(record, StepStatus.RESOLVED)
            else:
                record.attempts += outcome.attempt
                self._steps.finish(record, StepStatus.SUCCEEDED)
            if rounds_failed and not self.stuck():
                self._steps.set_status(SagaStatus.RUNNING)
            return

    # What operators can do --------------------------------------------------------------------

    def retry_now(self, request: RetryCompensationRequest) -> str:
        """Starts the next round of every stuck compensation now instead of after its backoff."""
        self._retry_round += 1
        stuck = ", ".join(f"{c.name} in {c.region}" for c in self.stuck())
        who = f" by {request.requested_by}" if request.requested_by else ""
        workflow.logger.info("compensation retry requested%s: %s", who, stuck)
        return f"retrying now: {stuck}"

    def resolve(self, request: ResolveRequest) -> str:
        """Records that an operator undid the stuck compensations by hand; the saga moves on."""
        stuck = self._resolvable()
        resolution = Resolution(
            resolved_by=request.resolved_by,
            note=request.note,
            at=workflow.now(),
            compensations=[f"{c.name} in {c.region}" for c in stuck],
        )
        for record in stuck:
            record.status = StepStatus.RESOLVED
        self._state.resolutions.append(resolution)
        self._steps.publish()
        workflow.logger.info("resolved by %s: %s", request.resolved_by, request.note)
        return f"resolved {', '.join(resolution.compensations)}; the saga continues compensating"

    def refuse_unless_stuck(self) -> None:
        if not self.stuck() or not self._answers_operators:
            raise ApplicationError(
                "no compensation of this order is waiting for an operator", type="NothingStuck"
            )

    def refuse_unless_resolvable(self) -> None:
        self.refuse_unless_stuck()
        if not self._resolvable():
            stuck = ", ".join(f"{c.name} in {c.region}" for c in self.stuck())
            raise ApplicationError(
                f"only a payment hold can be released by hand; {stuck} keeps retrying until "
                "its region answers (retry it now with compensations/retry)",
                type="NothingStuck",
            )

    def stuck(self) -> list[StepRecord]:
        return [c for c in self._state.compensations if c.status == StepStatus.RETRYING]

    def _resolvable(self) -> list[StepRecord]:
        """The stuck compensations a person can finish by hand: voids of payment holds."""
        stuck = self.stuck()
        if not self._resolves_holds_only:
            return stuck
        return [c for c in stuck if c.name == VOID]

    # Rounds -----------------------------------------------------------------------------------

    async def _unless_resolved(
        self, record: StepRecord, attempt: Callable[[], Awaitable[StepOutcome]]
    ) -> StepOutcome | None:
        """One round of an undo, abandoned (None) if an operator resolves it meanwhile."""
        if record.status == StepStatus.RESOLVED:
            return None
        round_ = asyncio.ensure_future(attempt())
        await workflow.wait_condition(lambda: round_.done() or record.status == StepStatus.RESOLVED)
        if round_.done():
            return await round_
        round_.cancel()
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await round_
        return None

    async def _before_next_round(self, record: StepRecord, rounds_failed: int) -> None:
        options = self._order.options
        backoff = min(
            options.retry_maximum_interval_seconds * 2 ** (rounds_failed - 1),
            options.compensation_max_backoff_seconds,
        )
        asked = self._retry_round
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: self._retry_round != asked or record.status == StepStatus.RESOLVED,
                timeout=timedelta(seconds=backoff),
            )

    async def _round(
        self, activity: ActivityName, request: BaseModel, region: str, summary: str
    ) -> StepOutcome:
        """One round of an undo: it ends after N attempts or T seconds (a region that is down)."""
        options = self._order.options
        outcome: StepOutcome = await workflow.execute_activity(
            activity,
            request,
            task_queue=self._order.regions[region],
            result_type=StepOutcome,
            start_to_close_timeout=self._steps.run_limit,
            schedule_to_close_timeout=timedelta(
                seconds=options.compensation_attention_after_seconds
            ),
            retry_policy=self._steps.retry(
                maximum_attempts=options.compensation_attempts_before_attention
            ),
            summary=summary,
        )
        return outcome


def _attempts_used(error: ActivityError, round_limit: int) -> int:
    """Attempts a failed round used: the whole limit, or one when time ran out first."""
    return round_limit if error.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED else 1
