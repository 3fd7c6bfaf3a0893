"""The order's own record in its home region: the saga's outcome, published as an event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session
from temporalio import activity

from activities.contract import ActivityName, ClearCart, OrderOutcome, StepOutcome
from activities.idempotency import once
from activities.region_bound import RegionBound, with_attempt
from regions import carts
from regions.events import OrderEnded


class OrderActivities(RegionBound):
    def all(self) -> Sequence[Callable[..., Any]]:
        return [self.record_outcome, self.clear_cart]

    @activity.defn(name=ActivityName.RECORD_OUTCOME, no_thread_cancel_exception=True)
    def record_outcome(self, outcome: OrderOutcome) -> StepOutcome:
        recorded = once(
            self._store, "outcome", outcome.key, lambda session: self._record(session, outcome)
        )
        return with_attempt(recorded)

    @activity.defn(name=ActivityName.CLEAR_CART, no_thread_cancel_exception=True)
    def clear_cart(self, request: ClearCart) -> StepOutcome:
        """Takes a completed checkout's items out of the customer's cart in this region."""

        def effect(session: Session) -> StepOutcome:
            carts.clear(session, self.region, request.customer_id, request.versions)
            return self._outcome(request.key, "cleared")

        return with_attempt(once(self._store, "clear-cart", request.key, effect))

    def _record(self, session: Session, outcome: OrderOutcome) -> StepOutcome:
        self._publish(
            session,
            OrderEnded(
                region=self.region,
                order_id=outcome.order_id,
                customer_id=outcome.customer_id,
                status=outcome.status,
                reason=outcome.reason,
                total=outcome.total,
                currency=outcome.currency,
                allocations=outcome.allocations,
            ),
        )
        return self._outcome(outcome.key, outcome.status)
