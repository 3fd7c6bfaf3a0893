"""The saga's payment in the home region: authorised, then captured (the pivot), or voided."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.compensation_rounds import VOID, CompensationRounds
from workflows.saga_steps import Rollback, SagaSteps, failure_message

with workflow.unsafe.imports_passed_through():
    from activities.contract import ActivityName, AuthorisationKey, AuthorisePayment
    from regions.values import AuthorisationStatus, Reason
    from workflows.compensation import CompensationStack
    from workflows.contract import OrderInput


class Payment:
    """One order's payment, as saga steps."""

    def __init__(
        self,
        order: OrderInput,
        steps: SagaSteps,
        undo: CompensationStack,
        rounds: CompensationRounds,
        cancel_requested: Callable[[], bool],
    ) -> None:
        self._order = order
        self._steps = steps
        self._undo = undo
        self._rounds = rounds
        self._cancel_requested = cancel_requested

    async def authorise(self) -> None:
        order, home = self._order, self._order.home_region
        self._undo.push("void payment", self._void)
        try:
            authorised = await self._steps.run(
                "authorise",
                home,
                self._amount,
                ActivityName.AUTHORISE_PAYMENT,
                AuthorisePayment(
                    key=self._authorisation,
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    amount=order.total,
                    currency=order.currency,
                    payment_token=order.payment_token,
                ),
                summary=f"authorise {self._amount} in {home}",
                schedule_to_close=timedelta(seconds=order.options.payment_timeout_seconds),
            )
        except ActivityError as failed:
            raise Rollback.after(
                failed, Reason.PAYMENT_DECLINED, cancelled=self._cancel_requested()
            ) from failed
        if authorised.status != AuthorisationStatus.AUTHORISED:
            # Only a rerun of this order sees this: an earlier run voided the authorisation.
            raise Rollback(Reason.CANCELLED, "the payment authorisation was voided")

    async def capture(self) -> None:
        home = self._order.home_region
        try:
            await self._steps.run(
                "capture",
                home,
                self._amount,
                ActivityName.CAPTURE_PAYMENT,
                AuthorisationKey(key=self._authorisation, order_id=self._order.order_id),
                summary=f"capture {self._amount} in {home}",
            )
        except ActivityError as failed:
            # Only a permanent refusal gets here; transient failures are retried forever.
            raise Rollback(Reason.PAYMENT_DECLINED, failure_message(failed)) from failed

    async def _void(self) -> None:
        home = self._order.home_region
        await self._rounds.run(
            VOID,
            home,
            self._amount,
            ActivityName.VOID_PAYMENT,
            AuthorisationKey(key=self._authorisation, order_id=self._order.order_id),
            f"compensate: void {self._amount} in {home}",
        )

    @property
    def _amount(self) -> str:
        return f"{self._order.total} {self._order.currency}"

    @property
    def _authorisation(self) -> str:
        """One key for the payment: authorising, capturing and voiding it."""
        return self._steps.key("authorise", self._order.home_region)
