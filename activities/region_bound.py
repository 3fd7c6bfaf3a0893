"""What every region's activity class shares: its store, its outbox and its outcomes.

Every activity here is defined with `no_thread_cancel_exception=True`. By default the SDK
cancels a threaded activity by raising CancelledError inside its thread, at whatever bytecode
it has reached: between taking the store's writer lock and the `try` that releases it, one left
the lock held, and every later write of that region's process waited on it for good (found by
`geosaga torture`). These are short transactions: a cancelled one finishes, its answer unused.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contract import ErrorType, StepOutcome
from regions import views
from regions.events import OrderEvent
from regions.store import Store


class RegionBound:
    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def region(self) -> str:
        return self._store.region

    def _publish(self, session: Session, event: OrderEvent) -> None:
        views.publish(session, self.region, event, event.order_id)

    def _outcome(self, key: str, status: str, **fields: Any) -> StepOutcome:
        return StepOutcome(key=key, region=self.region, status=status, **fields)


def with_attempt(outcome: StepOutcome) -> StepOutcome:
    """Stamps the delivery attempt, so the saga's step table shows retries."""
    return outcome.model_copy(update={"attempt": activity.info().attempt})


def refusal(outcome: StepOutcome, error_type: ErrorType) -> ApplicationError:
    """A business refusal: final for its key, so the saga compensates instead of retrying."""
    return ApplicationError(
        outcome.message or str(error_type),
        outcome.model_dump(mode="json"),
        type=error_type,
        non_retryable=True,
    )
