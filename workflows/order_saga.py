"""The order saga: allocate stock across regions while payment is authorised in the home
region, capture payment (the pivot), commit stock, record the outcome; or compensate."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.compensation_rounds import VOID, CompensationRounds
from workflows.saga_steps import SagaSteps, failure_message, is_cancellation

with workflow.unsafe.imports_passed_through():
    from activities.contract import (
        ActivityName,
        Allocated,
        AuthorisationKey,
        AuthorisePayment,
        ClearCart,
        OrderOutcome,
        ReservationKey,
        ReserveStock,
        StepOutcome,
        StockAvailability,
        StockCheck,
        StockLine,
    )
    from workflows.compensation import Compensation, CompensationError, CompensationStack, shielded
    from workflows.contract import (
        SAGA_REASON,
        SAGA_REGIONS,
        WORKFLOW_NAME,
        Allocation,
        CancelRequest,
        CancelResult,
        CartCheckout,
        OperatorResult,
        OrderInput,
        Reason,
        ResolveRequest,
        RetryCompensationRequest,
        SagaState,
        SagaStatus,
        Stage,
    )
    from workflows.planner import Demand, InsufficientStock, Pick, plan_allocation, regions_in
    from workflows.trace import describe_lines

_CANCELLED = "cancelled before payment was captured"

# Changes to released code paths, each behind workflow.patched so older histories replay
# (the operators' two are in workflows/compensation_rounds.py).
# Every saga ends by publishing its outcome from the home region.
PATCH_RECORD_OUTCOME = "record-outcome"
# Payment is authorised while stock is allocated, not after: one step shorter, and an order
# that turns out to be unavailable voids its authorisation.
PATCH_AUTHORISE_ALONGSIDE = "authorise-alongside-allocation"
# The home region's replicated stock view keeps regions with none of the SKUs out of planning.
PATCH_STOCK_VIEW = "stock-view-planning"
# A step's failure that lands with an accepted cancel compensates as the cancel, instead of
# failing the workflow with nothing undone (a stock check timing out as the cancel came in).
PATCH_CANCEL_WINS = "cancel-wins-over-step-failure"


class Rollback(Exception):
    """Raised before the pivot when the order cannot go on (out of stock, declined, cancelled):
    the saga compensates what it did and ends with `reason`."""

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
        self._steps = SagaSteps(order, self._state)
        self._undo = CompensationStack()
        self._rounds = CompensationRounds(order, self._state, self._steps)
        self._prepare_task: asyncio.Task[None] | None = None
        self._pivot_reached = False
        self._cancel_requested = False

    @workflow.run
    async def run(self, order: OrderInput) -> SagaState:
        self._steps.set_status(SagaStatus.RUNNING)
        if self._cancel_requested:
            return await self._roll_back(Rollback(Reason.CANCELLED, "cancelled before it started"))
        self._prepare_task = asyncio.create_task(self._prepare())
        try:
            await self._prepare_task
        except (Exception, asyncio.CancelledError) as error:
            if isinstance(error, Rollback):
                return await self._roll_back(error)
            if not is_cancellation(error) and not self._cancel_wins():
                raise
            # A cancel that lands after the pivot is ignored: the saga only moves forward now.
            if not self._pivot_reached:
                return await self._roll_back(Rollback(Reason.CANCELLED, _CANCELLED))
        try:
            await shielded(self._capture())
        except Rollback as declined:
            return await self._roll_back(declined)
        await shielded(self._commit())
        if self._state.status != SagaStatus.NEEDS_ATTENTION:
            await shielded(self._record_outcome(SagaStatus.COMPLETED))
            if order.cart is not None:
                await shielded(self._clear_cart(order.cart))
            self._state.stage = Stage.DONE
            self._steps.set_status(SagaStatus.COMPLETED)
        return self._state

    @workflow.query(name="state")
    def state(self) -> SagaState:
        return self._state

    # Messages ---------------------------------------------------------------------------------

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
        return self._operator_result(self._rounds.retry_now(request))

    @retry_compensation.validator
    def _validate_retry_compensation(self, request: RetryCompensationRequest) -> None:
        self._rounds.refuse_unless_stuck()

    @workflow.update(name="resolve")
    def resolve(self, request: ResolveRequest) -> OperatorResult:
        """Records that an operator undid the stuck compensations by hand; the saga moves on."""
        return self._operator_result(self._rounds.resolve(request))

    @resolve.validator
    def _validate_resolve(self, request: ResolveRequest) -> None:
        self._rounds.refuse_unless_resolvable()

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
            raise Rollback(Reason.CANCELLED, _CANCELLED)

    async def _plan(self) -> list[Pick]:
        order = self._order
        demands = [Demand(line.sku, line.quantity) for line in order.lines]
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
            raise Rollback(Reason.OUT_OF_STOCK, f"{short}{note}") from short
        self._state.allocations = [
            Allocation(region=p.region, sku=p.sku, quantity=p.quantity) for p in picks
        ]
        workflow.upsert_search_attributes([SAGA_REGIONS.value_set(regions_in(picks))])
        self._steps.publish()
        return picks

    async def _check_stock(self, region: str) -> StockAvailability | None:
        """A region's available units (and its view of the others), or None if it is silent."""
        try:
            return await self._steps.run(
                "check_stock",
                region,
                "available units",
                ActivityName.CHECK_STOCK,
                StockCheck(skus=[line.sku for line in self._order.lines]),
                summary=f"check stock in {region}",
                result_type=StockAvailability,
                # A silent region must not hold planning up: one deadline for all attempts.
                per_attempt_limit=False,
                schedule_to_close=timedelta(seconds=self._order.options.allocation_timeout_seconds),
            )
        except ActivityError as error:
            if self._cancel_requested or is_cancellation(error):
                raise
            return None

    async def _reserve(self, picks: list[Pick]) -> None:
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
                raise self._rollback_after(result, Reason.OUT_OF_STOCK) from result
        undone = [r for r in results if isinstance(r, StepOutcome) and r.status != "held"]
        if undone:
            # Only a rerun of this order sees this: an earlier run released the reservation.
            raise Rollback(Reason.CANCELLED, f"reservation in {undone[0].region} was undone")

    async def _reserve_in(self, region: str, lines: list[StockLine]) -> StepOutcome:
        allocation = self._order.options.allocation_timeout_seconds
        return await self._steps.run(
            "reserve",
            region,
            describe_lines(lines),
            ActivityName.RESERVE_STOCK,
            ReserveStock(
                key=self._steps.key("reserve", region), order_id=self._order.order_id, lines=lines
            ),
            summary=f"reserve {describe_lines(lines)} in {region}",
            schedule_to_close=timedelta(seconds=3 * allocation),
        )

    async def _authorise(self) -> None:
        home, order = self._order.home_region, self._order
        self._undo.push("void payment", self._void)
        try:
            authorised = await self._steps.run(
                "authorise",
                home,
                f"{order.total} {order.currency}",
                ActivityName.AUTHORISE_PAYMENT,
                AuthorisePayment(
                    key=self._steps.key("authorise", home),
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    amount=order.total,
                    currency=order.currency,
                    payment_token=order.payment_token,
                ),
                summary=f"authorise {order.total} {order.currency} in {home}",
                schedule_to_close=timedelta(seconds=order.options.payment_timeout_seconds),
            )
        except ActivityError as failed:
            raise self._rollback_after(failed, Reason.PAYMENT_DECLINED) from failed
        if authorised.status != "authorised":
            # Only a rerun of this order sees this: an earlier run voided the authorisation.
            raise Rollback(Reason.CANCELLED, "the payment authorisation was voided")

    async def _capture(self) -> None:
        home, order = self._order.home_region, self._order
        self._state.stage = Stage.CAPTURING
        self._steps.publish()
        try:
            await self._steps.run(
                "capture",
                home,
                f"{order.total} {order.currency}",
                ActivityName.CAPTURE_PAYMENT,
                AuthorisationKey(key=self._steps.key("authorise", home), order_id=order.order_id),
                summary=f"capture {order.total} {order.currency} in {home}",
            )
        except ActivityError as failed:
            # Only a permanent refusal gets here; transient failures are retried forever.
            raise Rollback(Reason.PAYMENT_DECLINED, failure_message(failed)) from failed

    async def _commit(self) -> None:
        self._state.stage = Stage.COMMITTING
        self._steps.publish()
        regions = regions_in([Pick(a.region, a.sku, a.quantity) for a in self._state.allocations])
        results = await asyncio.gather(
            *(self._commit_in(region) for region in regions), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # Payment is captured, so there is no going back: a person must look at it.
            self._state.message = f"commit failed after capture: {failure_message(failed[0])}"
            self._steps.set_status(SagaStatus.NEEDS_ATTENTION)

    async def _commit_in(self, region: str) -> StepOutcome:
        lines = [
            StockLine(sku=a.sku, quantity=a.quantity)
            for a in self._state.allocations
            if a.region == region
        ]
        return await self._steps.run(
            "commit",
            region,
            describe_lines(lines),
            ActivityName.COMMIT_STOCK,
            ReservationKey(key=self._steps.key("reserve", region), order_id=self._order.order_id),
            summary=f"commit {describe_lines(lines)} in {region}",
        )

    async def _record_outcome(self, status: SagaStatus) -> None:
        """Publishes the outcome from the home region, retried until it is written."""
        if not workflow.patched(PATCH_RECORD_OUTCOME):
            return
        order, home = self._order, self._order.home_region
        await self._steps.run(
            "record_outcome",
            home,
            str(status),
            ActivityName.RECORD_OUTCOME,
            OrderOutcome(
                key=self._steps.key("outcome", home),
                order_id=order.order_id,
                customer_id=order.customer_id,
                status=status.value,
                reason=self._state.reason.value if self._state.reason else None,
                total=order.total,
                currency=order.currency,
                allocations=[Allocated(**a.model_dump()) for a in self._state.allocations],
            ),
            summary=f"record order {status} in {home}",
        )

    async def _clear_cart(self, cart: CartCheckout) -> None:
        """Takes the checked-out items out of the cart they came from (only carts' orders)."""
        await self._steps.run(
            "clear_cart",
            cart.region,
            f"cart of {cart.customer_id}",
            ActivityName.CLEAR_CART,
            ClearCart(
                key=self._steps.key("clear-cart", cart.region),
                order_id=self._order.order_id,
                customer_id=cart.customer_id,
                versions=cart.versions,
            ),
            summary=f"clear the checked-out cart of {cart.customer_id} in {cart.region}",
        )

    # Compensation -----------------------------------------------------------------------------

    def _rollback_after(self, error: BaseException, reason: Reason) -> Rollback:
        """The rollback a failed step causes: a cancellation wins over the step's own failure."""
        if self._cancel_requested or is_cancellation(error):
            return Rollback(Reason.CANCELLED, _CANCELLED)
        return Rollback(reason, failure_message(error))

    async def _roll_back(self, rollback: Rollback) -> SagaState:
        """Runs every registered undo and ends compensated, or parked needing attention."""
        reason, message = rollback.reason, rollback.message
        workflow.logger.info("saga aborted (%s): %s", reason, message)
        self._state.reason = reason
        self._state.message = message
        self._state.stage = Stage.COMPENSATING
        workflow.upsert_search_attributes([SAGA_REASON.value_set(reason.value)])
        self._steps.publish()
        try:
            await self._undo.unwind()
        except CompensationError as failed:
            self._state.message = f"{message}; {failed}"
            self._steps.set_status(SagaStatus.NEEDS_ATTENTION)
            return self._state
        self._state.message = message
        await shielded(self._record_outcome(SagaStatus.COMPENSATED))
        self._state.stage = Stage.DONE
        self._steps.set_status(SagaStatus.COMPENSATED)
        return self._state

    async def _release(self, region: str, lines: list[StockLine]) -> None:
        await self._rounds.run(
            "release",
            region,
            describe_lines(lines),
            ActivityName.RELEASE_STOCK,
            ReservationKey(key=self._steps.key("reserve", region), order_id=self._order.order_id),
            f"compensate: release {describe_lines(lines)} in {region}",
        )

    async def _void(self) -> None:
        home, order = self._order.home_region, self._order
        await self._rounds.run(
            VOID,
            home,
            f"{order.total} {order.currency}",
            ActivityName.VOID_PAYMENT,
            AuthorisationKey(key=self._steps.key("authorise", home), order_id=order.order_id),
            f"compensate: void {order.total} {order.currency} in {home}",
        )


def _has_none(levels: dict[str, int] | None, demands: list[Demand]) -> bool:
    """The view knows this region and it has none of any demanded SKU."""
    return levels is not None and all(levels.get(d.sku, 0) <= 0 for d in demands)
