"""The order saga: allocate stock across regions while payment is authorised in the home
region, capture payment (the pivot), commit stock, record the outcome; or compensate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    RetryState,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.contract import (
        ActivityName,
        AuthorisationKey,
        AuthorisePayment,
        ClearCart,
        ErrorType,
        OrderOutcome,
        ReservationKey,
        ReserveStock,
        StepOutcome,
        StockAvailability,
        StockCheck,
    )
    from regions.values import (
        Allocation,
        AuthorisationStatus,
        Reason,
        ReservationStatus,
        SagaStatus,
        StockLine,
    )
    from workflows.compensation import Compensation, CompensationError, CompensationStack, shielded
    from workflows.contract import (
        SAGA_REASON,
        SAGA_REGIONS,
        SAGA_STATUS,
        WORKFLOW_NAME,
        CancelRequest,
        CancelResult,
        CartCheckout,
        OperatorResult,
        OrderInput,
        Resolution,
        ResolveRequest,
        RetryCompensationRequest,
        SagaState,
        Stage,
        StepRecord,
        StepStatus,
    )
    from workflows.planner import InsufficientStock, plan_allocation, regions_in
    from workflows.trace import describe_lines, step_table

R = TypeVar("R", bound=BaseModel)

_CANCELLED = "cancelled before payment was captured"
_VOID = "void"

# Changes to released code paths, each behind workflow.patched so older histories replay.
# Every saga ends by publishing its outcome from the home region.
PATCH_RECORD_OUTCOME = "record-outcome"
# Stuck compensations back off further each round and answer operators (retry now, resolve).
PATCH_OPERATOR_ACTIONS = "operator-actions"
# Payment is authorised while stock is allocated, not after: one step shorter, and an order
# that turns out to be unavailable voids its authorisation.
PATCH_AUTHORISE_ALONGSIDE = "authorise-alongside-allocation"
# The home region's replicated stock view keeps regions with none of the SKUs out of planning.
PATCH_STOCK_VIEW = "stock-view-planning"
# A step's failure that lands with an accepted cancel compensates as the cancel, instead of
# failing the workflow with nothing undone (a stock check timing out as the cancel came in).
PATCH_CANCEL_WINS = "cancel-wins-over-step-failure"
# An operator's resolve finishes only payment holds (released in the gateway's console); a
# stuck stock release has no console, so it keeps retrying instead of holding units for good.
PATCH_RESOLVE_HOLDS_ONLY = "resolve-holds-only"

# Forward steps after the pivot and every compensation retry until they succeed.
_FOREVER = 0


def _has_none(levels: dict[str, int] | None, demands: list[StockLine]) -> bool:
    """The view knows this region and it has none of any demanded SKU."""
    return levels is not None and all(levels.get(d.sku, 0) <= 0 for d in demands)


def is_cancellation(error: BaseException) -> bool:
    """Cancelling a task that awaits an activity surfaces as ActivityError(CancelledError)."""
    if isinstance(error, asyncio.CancelledError | CancelledError):
        return True
    return isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)


class SagaAborted(Exception):
    """A business failure before the pivot: the saga compensates and ends with `reason`."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@workflow.defn(name=WORKFLOW_NAME)
class OrderSaga:
    """One order as a saga.

    Query `state`: the saga's step table. Updates, each answering at once:
    `cancel` — accepted before the pivot (the saga compensates), refused once capture began;
    `retry_compensation` — start the next round of stuck compensations now;
    `resolve` — record that a person finished the stuck compensations by hand.
    """

    @workflow.init
    def __init__(self, order: OrderInput) -> None:
        self._order = order
        self._state = SagaState.begin(order)
        self._undo = CompensationStack()
        self._prepare_task: asyncio.Task[None] | None = None
        self._pivot_reached = False
        self._cancel_requested = False
        self._retry_round = 0
        # False while replaying a compensation that began before operators could act on it.
        self._answers_operators = False
        # False while replaying a saga from before a resolve left stock releases alone.
        self._resolves_holds_only = False

    @workflow.run
    async def run(self, order: OrderInput) -> SagaState:
        self._set_status(SagaStatus.RUNNING)
        if self._cancel_requested:
            return await self._abort(Reason.CANCELLED, "cancelled before it started")
        self._prepare_task = asyncio.create_task(self._prepare())
        try:
            await self._prepare_task
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, SagaAborted):
                return await self._abort(error.reason, error.message)
            if not is_cancellation(error) and not self._cancel_wins():
                raise
            # A cancel that lands after the pivot is ignored: the saga only moves forward now.
            if not self._pivot_reached:
                return await self._abort(Reason.CANCELLED, _CANCELLED)
        try:
            await shielded(self._capture())
        except SagaAborted as aborted:
            return await self._abort(aborted.reason, aborted.message)
        await shielded(self._commit())
        if self._state.status != SagaStatus.NEEDS_ATTENTION:
            await shielded(self._record_outcome(SagaStatus.COMPLETED))
            if order.cart is not None:
                await shielded(self._clear_cart(order.cart))
            self._state.stage = Stage.DONE
            self._set_status(SagaStatus.COMPLETED)
        return self._state

    @workflow.query(name="state")
    def state(self) -> SagaState:
        return self._state

    @workflow.update(name="cancel")
    def cancel(self, request: CancelRequest) -> CancelResult:
        if self._state.reason == Reason.CANCELLED:
            return CancelResult(accepted=True, stage=self._state.stage, message="already cancelled")
        # Checked again here: the validator may have run before a step that finished in the
        # same workflow task moved the saga past the pivot.
        self._refuse_cancel_if_too_late()
        self._cancel_requested = True
        if self._prepare_task is not None:
            self._prepare_task.cancel()
        who = f" by {request.requested_by}" if request.requested_by else ""
        workflow.logger.info("cancel accepted%s at stage %s", who, self._state.stage)
        return CancelResult(
            accepted=True,
            stage=self._state.stage,
            message="cancellation accepted; every completed step will be compensated",
        )

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._state.reason != Reason.CANCELLED:
            self._refuse_cancel_if_too_late()

    def _cancel_wins(self) -> bool:
        """An accepted cancel decides how a step's failure before the pivot ends the saga."""
        return (
            self._cancel_requested
            and not self._pivot_reached
            and workflow.patched(PATCH_CANCEL_WINS)
        )

    def _refuse_cancel_if_too_late(self) -> None:
        if self._pivot_reached:
            raise ApplicationError(
                "payment has been captured; the order can no longer be cancelled",
                type="CancelRefused",
            )
        if self._state.reason is not None or (
            self._prepare_task is not None and self._prepare_task.done()
        ):
            raise ApplicationError(
                "the order already failed and is being compensated", type="CancelRefused"
            )

    @workflow.update(name="retry_compensation")
    def retry_compensation(self, request: RetryCompensationRequest) -> OperatorResult:
        """Starts the next round of every stuck compensation now instead of after its backoff."""
        self._retry_round += 1
        stuck = ", ".join(f"{c.name} in {c.region}" for c in self._stuck())
        who = f" by {request.requested_by}" if request.requested_by else ""
        workflow.logger.info("compensation retry requested%s: %s", who, stuck)
        return self._operator_result(f"retrying now: {stuck}")

    @retry_compensation.validator
    def _validate_retry_compensation(self, request: RetryCompensationRequest) -> None:
        self._require_stuck()

    @workflow.update(name="resolve")
    def resolve(self, request: ResolveRequest) -> OperatorResult:
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
        self._publish()
        workflow.logger.info("resolved by %s: %s", request.resolved_by, request.note)
        return self._operator_result(
            f"resolved {', '.join(resolution.compensations)}; the saga continues compensating"
        )

    @resolve.validator
    def _validate_resolve(self, request: ResolveRequest) -> None:
        self._require_stuck()
        if not self._resolvable():
            stuck = ", ".join(f"{c.name} in {c.region}" for c in self._stuck())
            raise ApplicationError(
                f"only a payment hold can be released by hand; {stuck} keeps retrying until "
                "its region answers (retry it now with compensations/retry)",
                type="NothingStuck",
            )

    def _stuck(self) -> list[StepRecord]:
        return [c for c in self._state.compensations if c.status == StepStatus.RETRYING]

    def _resolvable(self) -> list[StepRecord]:
        """The stuck compensations a person can finish by hand: voids of payment holds."""
        stuck = self._stuck()
        if not self._resolves_holds_only:
            return stuck
        return [c for c in stuck if c.name == _VOID]

    def _require_stuck(self) -> None:
        if not self._stuck() or not self._answers_operators:
            raise ApplicationError(
                "no compensation of this order is waiting for an operator", type="NothingStuck"
            )

    def _operator_result(self, message: str) -> OperatorResult:
        return OperatorResult(status=self._state.status, stage=self._state.stage, message=message)

    # Forward path -----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        """Everything before the pivot; a cancel cancels this task.

        Cancelling a task whose activity has already finished does not stop it, so the flag is
        checked again between steps and, last, just before the pivot.
        """
        if workflow.patched(PATCH_AUTHORISE_ALONGSIDE):
            authorising = asyncio.ensure_future(self._authorise())
            try:
                await self._allocate()
            except (Exception, asyncio.CancelledError) as failure:
                if self._cancel_requested or is_cancellation(failure):
                    authorising.cancel()
                # Otherwise the authorisation may finish first: a hold that is known is voided
                # for certain, where one cancelled in flight leaves only a tombstone to stop it.
                await asyncio.gather(authorising, return_exceptions=True)
                raise
            await authorising
        else:
            await self._allocate()
            await self._authorise()
        self._honour_cancel()
        self._pivot_reached = True

    async def _allocate(self) -> None:
        picks = await self._plan()
        self._honour_cancel()
        self._state.stage = Stage.RESERVING
        await self._reserve(picks)
        self._honour_cancel()
        # Reservations are held; what is left before the pivot is the authorisation.
        self._state.stage = Stage.AUTHORISING

    def _honour_cancel(self) -> None:
        if self._cancel_requested:
            raise SagaAborted(Reason.CANCELLED, _CANCELLED)

    async def _plan(self) -> list[Allocation]:
        order = self._order
        demands = [StockLine(sku=line.sku, quantity=line.quantity) for line in order.lines]
        availability: dict[str, dict[str, int]] = {}
        home = await self._check_stock(order.home_region)
        if home is not None:
            availability[order.home_region] = home.available
        others = [region for region in order.regions if region != order.home_region]
        skipped: list[str] = []
        if home is not None and workflow.patched(PATCH_STOCK_VIEW):
            # Data locality: leave out regions whose replicated stock has none of these SKUs.
            skipped = [r for r in others if _has_none(home.elsewhere.get(r), demands)]
            others = [r for r in others if r not in skipped]
        if home is None or any(home.available.get(d.sku, 0) < d.quantity for d in demands):
            levels = await asyncio.gather(*(self._check_stock(region) for region in others))
            availability.update(
                {r: found.available for r, found in zip(others, levels, strict=True) if found}
            )
        try:
            picks = plan_allocation(demands, order.home_region, availability, list(order.regions))
        except InsufficientStock as short:
            silent = [r for r in order.regions if r not in availability and r not in skipped]
            notes = [f"no answer from {', '.join(silent)}"] if silent else []
            if skipped:
                notes.append(f"none replicated from {', '.join(skipped)}")
            note = f" ({'; '.join(notes)})" if notes else ""
            raise SagaAborted(Reason.OUT_OF_STOCK, f"{short}{note}") from short
        self._state.allocations = picks
        workflow.upsert_search_attributes([SAGA_REGIONS.value_set(regions_in(picks))])
        self._publish()
        return picks

    async def _check_stock(self, region: str) -> StockAvailability | None:
        """A region's available units (and its view of the others), or None if it is silent."""
        timeout = timedelta(seconds=self._order.options.allocation_timeout_seconds)
        try:
            result: StockAvailability = await self._tracked(
                self._state.steps,
                "check_stock",
                region,
                "available units",
                workflow.execute_activity(
                    ActivityName.CHECK_STOCK,
                    StockCheck(skus=[line.sku for line in self._order.lines]),
                    task_queue=self._order.regions[region],
                    result_type=StockAvailability,
                    schedule_to_close_timeout=timeout,
                    retry_policy=self._retry(),
                    summary=f"check stock in {region}",
                ),
            )
        except ActivityError as error:
            if self._cancel_requested or is_cancellation(error):
                raise
            return None
        return result

    async def _reserve(self, picks: list[Allocation]) -> None:
        by_region: dict[str, list[StockLine]] = {}
        for pick in picks:
            by_region.setdefault(pick.region, []).append(
                StockLine(sku=pick.sku, quantity=pick.quantity)
            )
        self._undo.push_group(
            [
                Compensation(f"release in {region}", partial(self._release, region, lines))
                for region, lines in by_region.items()
            ]
        )
        results = await asyncio.gather(
            *(self._reserve_in(region, lines) for region, lines in by_region.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise self._aborted(result, Reason.OUT_OF_STOCK) from result
        undone = [
            r for r in results if isinstance(r, StepOutcome) and r.status != ReservationStatus.HELD
        ]
        if undone:
            # Only a rerun of this order sees this: an earlier run released the reservation.
            raise SagaAborted(Reason.CANCELLED, f"reservation in {undone[0].region} was undone")

    async def _reserve_in(self, region: str, lines: list[StockLine]) -> StepOutcome:
        allocation = self._order.options.allocation_timeout_seconds
        return await self._tracked(
            self._state.steps,
            "reserve",
            region,
            describe_lines(lines),
            workflow.execute_activity(
                ActivityName.RESERVE_STOCK,
                ReserveStock(
                    key=self._key("reserve", region), order_id=self._order.order_id, lines=lines
                ),
                task_queue=self._order.regions[region],
                result_type=StepOutcome,
                start_to_close_timeout=self._run_limit,
                schedule_to_close_timeout=timedelta(seconds=3 * allocation),
                retry_policy=self._retry(),
                summary=f"reserve {describe_lines(lines)} in {region}",
            ),
        )

    async def _authorise(self) -> None:
        home, order = self._order.home_region, self._order
        self._undo.push("void payment", self._void)
        try:
            authorised = await self._tracked(
                self._state.steps,
                "authorise",
                home,
                f"{order.total} {order.currency}",
                workflow.execute_activity(
                    ActivityName.AUTHORISE_PAYMENT,
                    AuthorisePayment(
                        key=self._key("authorise", home),
                        order_id=order.order_id,
                        customer_id=order.customer_id,
                        amount=order.total,
                        currency=order.currency,
                        payment_token=order.payment_token,
                    ),
                    task_queue=order.regions[home],
                    result_type=StepOutcome,
                    start_to_close_timeout=self._run_limit,
                    schedule_to_close_timeout=timedelta(
                        seconds=order.options.payment_timeout_seconds
                    ),
                    retry_policy=self._retry(),
                    summary=f"authorise {order.total} {order.currency} in {home}",
                ),
            )
        except ActivityError as failed:
            raise self._aborted(failed, Reason.PAYMENT_DECLINED) from failed
        if authorised.status != AuthorisationStatus.AUTHORISED:
            # Only a rerun of this order sees this: an earlier run voided the authorisation.
            raise SagaAborted(Reason.CANCELLED, "the payment authorisation was voided")

    async def _capture(self) -> None:
        home, order = self._order.home_region, self._order
        self._state.stage = Stage.CAPTURING
        self._publish()
        try:
            await self._tracked(
                self._state.steps,
                "capture",
                home,
                f"{order.total} {order.currency}",
                workflow.execute_activity(
                    ActivityName.CAPTURE_PAYMENT,
                    AuthorisationKey(key=self._key("authorise", home), order_id=order.order_id),
                    task_queue=order.regions[home],
                    result_type=StepOutcome,
                    start_to_close_timeout=self._run_limit,
                    retry_policy=self._retry(maximum_attempts=_FOREVER),
                    summary=f"capture {order.total} {order.currency} in {home}",
                ),
            )
        except ActivityError as failed:
            # Only a permanent refusal gets here; transient failures are retried forever.
            raise SagaAborted(Reason.PAYMENT_DECLINED, _failure_message(failed)) from failed

    async def _commit(self) -> None:
        self._state.stage = Stage.COMMITTING
        self._publish()
        regions = regions_in(self._state.allocations)
        results = await asyncio.gather(
            *(self._commit_in(region) for region in regions), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # Payment is captured, so there is no going back: a person must look at it.
            self._state.message = f"commit failed after capture: {_failure_message(failed[0])}"
            self._set_status(SagaStatus.NEEDS_ATTENTION)

    async def _commit_in(self, region: str) -> StepOutcome:
        lines = [
            StockLine(sku=a.sku, quantity=a.quantity)
            for a in self._state.allocations
            if a.region == region
        ]
        return await self._tracked(
            self._state.steps,
            "commit",
            region,
            describe_lines(lines),
            workflow.execute_activity(
                ActivityName.COMMIT_STOCK,
                ReservationKey(key=self._key("reserve", region), order_id=self._order.order_id),
                task_queue=self._order.regions[region],
                result_type=StepOutcome,
                start_to_close_timeout=self._run_limit,
                retry_policy=self._retry(maximum_attempts=_FOREVER),
                summary=f"commit {describe_lines(lines)} in {region}",
            ),
        )

    async def _record_outcome(self, status: SagaStatus) -> None:
        """Publishes the outcome from the home region, retried until it is written."""
        if not workflow.patched(PATCH_RECORD_OUTCOME):
            return
        order, home = self._order, self._order.home_region
        await self._tracked(
            self._state.steps,
            "record_outcome",
            home,
            str(status),
            workflow.execute_activity(
                ActivityName.RECORD_OUTCOME,
                OrderOutcome(
                    key=self._key("outcome", home),
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    status=status.value,
                    reason=self._state.reason.value if self._state.reason else None,
                    total=order.total,
                    currency=order.currency,
                    allocations=self._state.allocations,
                ),
                task_queue=order.regions[home],
                result_type=StepOutcome,
                start_to_close_timeout=self._run_limit,
                retry_policy=self._retry(maximum_attempts=_FOREVER),
                summary=f"record order {status} in {home}",
            ),
        )

    async def _clear_cart(self, cart: CartCheckout) -> None:
        """Takes the checked-out items out of the cart they came from (only carts' orders)."""
        await self._tracked(
            self._state.steps,
            "clear_cart",
            cart.region,
            f"cart of {cart.customer_id}",
            workflow.execute_activity(
                ActivityName.CLEAR_CART,
                ClearCart(
                    key=self._key("clear-cart", cart.region),
                    order_id=self._order.order_id,
                    customer_id=cart.customer_id,
                    versions=cart.versions,
                ),
                task_queue=self._order.regions[cart.region],
                result_type=StepOutcome,
                start_to_close_timeout=self._run_limit,
                retry_policy=self._retry(maximum_attempts=_FOREVER),
                summary=f"clear the checked-out cart of {cart.customer_id} in {cart.region}",
            ),
        )

    # Compensation -----------------------------------------------------------------------------

    async def _abort(self, reason: Reason, message: str) -> SagaState:
        workflow.logger.info("saga aborted (%s): %s", reason, message)
        self._state.reason = reason
        self._state.message = message
        self._state.stage = Stage.COMPENSATING
        workflow.upsert_search_attributes([SAGA_REASON.value_set(reason.value)])
        self._publish()
        try:
            await self._undo.unwind()
        except CompensationError as failed:
            self._state.message = f"{message}; {failed}"
            self._set_status(SagaStatus.NEEDS_ATTENTION)
            return self._state
        self._state.message = message
        await shielded(self._record_outcome(SagaStatus.COMPENSATED))
        self._state.stage = Stage.DONE
        self._set_status(SagaStatus.COMPENSATED)
        return self._state

    async def _release(self, region: str, lines: list[StockLine]) -> None:
        await self._compensate(
            "release",
            region,
            describe_lines(lines),
            partial(
                self._compensation_activity,
                ActivityName.RELEASE_STOCK,
                ReservationKey(key=self._key("reserve", region), order_id=self._order.order_id),
                region,
                f"compensate: release {describe_lines(lines)} in {region}",
            ),
        )

    async def _void(self) -> None:
        home, order = self._order.home_region, self._order
        await self._compensate(
            _VOID,
            home,
            f"{order.total} {order.currency}",
            partial(
                self._compensation_activity,
                ActivityName.VOID_PAYMENT,
                AuthorisationKey(key=self._key("authorise", home), order_id=order.order_id),
                home,
                f"compensate: void {order.total} {order.currency} in {home}",
            ),
        )

    async def _compensate(
        self, name: str, region: str, detail: str, attempt: Callable[[], Awaitable[StepOutcome]]
    ) -> None:
        """Retries an undo until it succeeds or an operator resolves it.

        After a failed round the saga needs attention; the next round starts after a backoff
        that doubles up to a cap, or at once when an operator asks for a retry.
        """
        record = self._begin(self._state.compensations, name, region, detail)
        answers_operators = workflow.patched(PATCH_OPERATOR_ACTIONS)
        self._answers_operators = answers_operators
        if answers_operators:
            self._resolves_holds_only = workflow.patched(PATCH_RESOLVE_HOLDS_ONLY)
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
                record.error = _failure_message(failed)
                if _is_permanent(failed):
                    self._finish(record, StepStatus.FAILED)
                    raise
                rounds_failed += 1
                record.status = StepStatus.RETRYING
                self._state.message = f"{name} in {region} keeps failing: {record.error}"
                self._set_status(SagaStatus.NEEDS_ATTENTION)
                if answers_operators:
                    await self._before_next_round(record, rounds_failed)
                else:
                    await workflow.sleep(self._order.options.retry_maximum_interval_seconds)
                continue
            if outcome is None:
                self._finish(record, StepStatus.RESOLVED)
            else:
                record.attempts += outcome.attempt
                self._finish(record, StepStatus.SUCCEEDED)
            if rounds_failed and not self._stuck():
                self._set_status(SagaStatus.RUNNING)
            return

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

    async def _compensation_activity(
        self, activity: ActivityName, request: BaseModel, region: str, summary: str
    ) -> StepOutcome:
        """One round of an undo: it ends after N attempts or T seconds (a region that is down)."""
        options = self._order.options
        outcome: StepOutcome = await workflow.execute_activity(
            activity,
            request,
            task_queue=self._order.regions[region],
            result_type=StepOutcome,
            start_to_close_timeout=self._run_limit,
            schedule_to_close_timeout=timedelta(
                seconds=options.compensation_attention_after_seconds
            ),
            retry_policy=self._retry(
                maximum_attempts=options.compensation_attempts_before_attention
            ),
            summary=summary,
        )
        return outcome

    def _aborted(self, error: BaseException, reason: Reason) -> SagaAborted:
        """The abort a failed step causes: a cancellation wins over the step's own failure."""
        if self._cancel_requested or is_cancellation(error):
            return SagaAborted(Reason.CANCELLED, _CANCELLED)
        return SagaAborted(reason, _failure_message(error))

    # Bookkeeping ------------------------------------------------------------------------------

    @property
    def _run_limit(self) -> timedelta:
        return timedelta(seconds=self._order.options.activity_timeout_seconds)

    def _key(self, step: str, region: str) -> str:
        """Idempotency key of a step: from the workflow id and the step, never the attempt."""
        return f"{workflow.info().workflow_id}/{step}/{region}"

    def _retry(self, *, maximum_attempts: int = _FOREVER) -> RetryPolicy:
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

    async def _tracked(
        self, table: list[StepRecord], name: str, region: str, detail: str, call: Awaitable[R]
    ) -> R:
        record = self._begin(table, name, region, detail)
        try:
            result = await call
        except (Exception, asyncio.CancelledError) as failed:
            cancelled = is_cancellation(failed)
            record.error = None if cancelled else _failure_message(failed)
            record.attempts = _attempts_of(failed)
            self._finish(record, StepStatus.CANCELLED if cancelled else StepStatus.FAILED)
            raise
        if isinstance(result, StepOutcome):
            record.attempts = result.attempt
        else:
            record.attempts = 1
        self._finish(record, StepStatus.SUCCEEDED)
        return result

    def _begin(self, table: list[StepRecord], name: str, region: str, detail: str) -> StepRecord:
        record = StepRecord(
            name=name,
            region=region,
            status=StepStatus.RUNNING,
            detail=detail,
            started_at=workflow.now(),
        )
        table.append(record)
        self._publish()
        return record

    def _finish(self, record: StepRecord, status: StepStatus) -> None:
        record.status = status
        record.finished_at = workflow.now()
        self._publish()

    def _set_status(self, status: SagaStatus) -> None:
        if self._state.status != status:
            self._state.status = status
            workflow.upsert_search_attributes([SAGA_STATUS.value_set(status.value)])
        self._publish()

    def _publish(self) -> None:
        workflow.set_current_details(step_table(self._state))


def _failure_message(error: BaseException) -> str:
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


def _is_permanent(error: ActivityError) -> bool:
    return error.retry_state == RetryState.NON_RETRYABLE_FAILURE


def _attempts_used(error: ActivityError, round_limit: int) -> int:
    """Attempts a failed round used: the whole limit, or one when time ran out first."""
    return round_limit if error.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED else 1
