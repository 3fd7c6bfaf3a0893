"""The order saga: allocate stock across regions while payment is authorised in the home
region, capture payment (the pivot), commit stock, record the outcome; or compensate.

The steps of each part are in workflows/allocation.py and workflows/payment.py, how a step runs
in workflows/saga_steps.py, and compensations that keep failing in compensation_rounds.py.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.allocation import StockAllocation
from workflows.compensation_rounds import CompensationRounds
from workflows.payment import Payment
from workflows.saga_steps import CANCELLED, Rollback, SagaSteps, is_cancellation

with workflow.unsafe.imports_passed_through():
    from activities.contract import ActivityName, ClearCart, OrderOutcome
    from regions.values import Reason, SagaStatus
    from workflows.compensation import CompensationError, CompensationStack, shielded
    from workflows.contract import (
        SAGA_REASON,
        WORKFLOW_NAME,
        CancelRequest,
        CancelResult,
        CartCheckout,
        OperatorResult,
        OrderInput,
        ResolveRequest,
        RetryCompensationRequest,
        SagaState,
        Stage,
    )

# Changes to released code paths, each behind workflow.patched so older histories replay
# (planning's is in workflows/allocation.py, the operators' in compensation_rounds.py).
# Every saga ends by publishing its outcome from the home region.
PATCH_RECORD_OUTCOME = "record-outcome"
# Payment is authorised while stock is allocated, not after: one step shorter, and an order
# that turns out to be unavailable voids its authorisation.
PATCH_AUTHORISE_ALONGSIDE = "authorise-alongside-allocation"
# A step's failure that lands with an accepted cancel compensates as the cancel, instead of
# failing the workflow with nothing undone (a stock check timing out as the cancel came in).
PATCH_CANCEL_WINS = "cancel-wins-over-step-failure"


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
        self._stock = StockAllocation(
            order, self._state, self._steps, self._undo, self._rounds, self._cancelled
        )
        self._payment = Payment(order, self._steps, self._undo, self._rounds, self._cancelled)
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
                return await self._roll_back(Rollback(Reason.CANCELLED, CANCELLED))
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
            authorising = asyncio.ensure_future(self._payment.authorise())
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
            await self._payment.authorise()
        self._honour_cancel()
        self._pivot_reached = True

    async def _allocate(self) -> None:
        picks = await self._stock.plan()
        self._honour_cancel()
        self._state.stage = Stage.RESERVING
        await self._stock.reserve(picks)
        self._honour_cancel()
        # Reservations are held; what is left before the pivot is the authorisation.
        self._state.stage = Stage.AUTHORISING

    def _honour_cancel(self) -> None:
        if self._cancel_requested:
            raise Rollback(Reason.CANCELLED, CANCELLED)

    def _cancelled(self) -> bool:
        return self._cancel_requested

    async def _capture(self) -> None:
        self._state.stage = Stage.CAPTURING
        self._steps.publish()
        await self._payment.capture()

    async def _commit(self) -> None:
        self._state.stage = Stage.COMMITTING
        self._steps.publish()
        await self._stock.commit()

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
                allocations=self._state.allocations,
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
