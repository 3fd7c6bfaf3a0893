"""Payment activities of the customer's home region: authorise, void (compensation), capture.

The gateway is called outside the store transaction (it is another system), with keys made
from the step's key, so a retry after a crash between the two gets the gateway's first answer
again. The void goes to the gateway every time until the gateway confirms it, whatever the
store says: it cancels the step's reference, which voids a hold already made and any made
after it (a worker paused past its timeout), so no hold outlives a void.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contract import (
    ActivityName,
    AuthorisationKey,
    AuthorisePayment,
    ErrorType,
    StepOutcome,
)
from activities.gateway import GatewayAuthorisation, GatewayRejected, PaymentGateway
from activities.idempotency import once, previous_outcome
from activities.region_bound import RegionBound, refusal, with_attempt
from regions import events
from regions.models import Authorisation, Capture, utcnow
from regions.money import from_minor, to_minor
from regions.store import Store
from regions.values import AuthorisationStatus

# What the gateway may answer an authorisation with, in the words we store (never captured).
_GRANTED = frozenset(
    {AuthorisationStatus.AUTHORISED, AuthorisationStatus.DECLINED, AuthorisationStatus.VOIDED}
)


def capture_key(key: str) -> str:
    return f"{key}/capture"


def void_key(key: str) -> str:
    return f"{key}/void"


class PaymentActivities(RegionBound):
    """Bound to one region's store and gateway; registered only on that region's task queue."""

    def __init__(self, store: Store, gateway: PaymentGateway) -> None:
        super().__init__(store)
        self._gateway = gateway

    def all(self) -> Sequence[Callable[..., Any]]:
        return [self.authorise_payment, self.void_payment, self.capture_payment]

    @activity.defn(name=ActivityName.AUTHORISE_PAYMENT, no_thread_cancel_exception=True)
    def authorise_payment(self, request: AuthorisePayment) -> StepOutcome:
        outcome = previous_outcome(self._store, "authorise", request.key)
        if outcome is None:
            try:
                granted = self._gateway.authorise(
                    request.key, request.payment_token, request.amount, request.currency
                )
            except GatewayRejected as rejected:
                raise ApplicationError(
                    f"authorisation refused by the gateway: {rejected}",
                    type=ErrorType.PAYMENT_DECLINED,
                    non_retryable=True,
                ) from rejected
            outcome = once(
                self._store,
                "authorise",
                request.key,
                lambda session: self._record_authorisation(session, request, granted),
            )
        outcome = with_attempt(outcome)
        if outcome.status == AuthorisationStatus.DECLINED:
            raise refusal(outcome, ErrorType.PAYMENT_DECLINED)
        if outcome.repeated and outcome.status == AuthorisationStatus.AUTHORISED:
            outcome = self._unless_voided(outcome)
        return outcome

    def _unless_voided(self, outcome: StepOutcome) -> StepOutcome:
        """A repeat says so when a void released the hold since: a saga rerun from before its
        compensation must not capture a hold that is gone."""
        with self._store.reading() as session:
            authorisation = session.get(Authorisation, outcome.key)
        if authorisation is None or authorisation.status != AuthorisationStatus.VOIDED:
            return outcome
        return outcome.model_copy(
            update={"status": AuthorisationStatus.VOIDED, "message": "voided since it was made"}
        )

    @activity.defn(name=ActivityName.VOID_PAYMENT, no_thread_cancel_exception=True)
    def void_payment(self, request: AuthorisationKey) -> StepOutcome:
        # A void is recorded only once the gateway has confirmed the cancel: from then on the
        # gateway voids anything under the reference, so the record is safe to answer with.
        outcome = previous_outcome(self._store, "void", request.key)
        if outcome is None:
            try:
                self._gateway.cancel(request.key, key=void_key(request.key))
            except GatewayRejected as rejected:
                raise _invalid(
                    f"the gateway refused to void {request.key}: {rejected}"
                ) from rejected
            outcome = once(
                self._store,
                "void",
                request.key,
                lambda session: self._record_void(session, request),
            )
        return with_attempt(outcome)

    @activity.defn(name=ActivityName.CAPTURE_PAYMENT, no_thread_cancel_exception=True)
    def capture_payment(self, request: AuthorisationKey) -> StepOutcome:
        outcome = previous_outcome(self._store, "capture", request.key)
        if outcome is None:
            with self._store.reading() as session:
                authorisation = session.get(Authorisation, request.key)
            if authorisation is None or authorisation.status != AuthorisationStatus.AUTHORISED:
                status = "missing" if authorisation is None else authorisation.status
                raise _invalid(f"authorisation {request.key} is {status}; it cannot be captured")
            try:
                captured = self._gateway.capture(
                    _gateway_ref(authorisation),
                    from_minor(authorisation.amount_minor),
                    key=capture_key(request.key),
                )
            except GatewayRejected as rejected:
                raise ApplicationError(
                    f"capture refused by the gateway: {rejected}",
                    type=ErrorType.PAYMENT_DECLINED,
                    non_retryable=True,
                ) from rejected
            outcome = once(
                self._store,
                "capture",
                request.key,
                lambda session: self._record_capture(session, request, captured.id),
            )
        return with_attempt(outcome)

    def _record_authorisation(
        self, session: Session, request: AuthorisePayment, granted: GatewayAuthorisation
    ) -> StepOutcome:
        existing = session.get(Authorisation, request.key)
        if existing is not None:
            # Only a void's tombstone can be here, and the void had the gateway cancel the
            # reference first: this authorisation is voided there, whatever it answered us.
            existing.gateway_ref = granted.id
            existing.updated_at = utcnow()
            session.add(existing)
            return self._outcome(
                request.key,
                AuthorisationStatus.VOIDED,
                gateway_ref=granted.id,
                message="a void overtook this authorisation",
            )
        if granted.status not in _GRANTED:
            raise _invalid(f"the gateway answered an authorisation {granted.status}")
        status = AuthorisationStatus(granted.status)
        session.add(
            Authorisation(
                key=request.key,
                order_id=request.order_id,
                customer_id=request.customer_id,
                amount_minor=to_minor(request.amount),
                currency=request.currency,
                status=status,
                gateway_ref=granted.id,
                decline_reason=granted.reason if status == AuthorisationStatus.DECLINED else None,
            )
        )
        if status == AuthorisationStatus.VOIDED:
            # The gateway had the reference cancelled already: a void got there first and
            # records itself when it runs again.
            return self._outcome(
                request.key,
                status,
                gateway_ref=granted.id,
                message="a void overtook this authorisation",
            )
        common = {
            "region": self.region,
            "order_id": request.order_id,
            "amount": request.amount,
            "currency": request.currency,
        }
        approved = status == AuthorisationStatus.AUTHORISED
        self._publish(
            session,
            events.PaymentAuthorised(**common)
            if approved
            else events.PaymentDeclined(**common, reason=granted.reason),
        )
        return self._outcome(
            request.key,
            status,
            gateway_ref=granted.id,
            message=None if approved else f"payment declined: {granted.reason}",
        )

    def _record_void(self, session: Session, request: AuthorisationKey) -> StepOutcome:
        authorisation = session.get(Authorisation, request.key)
        if authorisation is None:
            # Nothing authorised yet: a tombstone makes a late authorisation void itself.
            session.add(
                Authorisation(
                    key=request.key,
                    order_id=request.order_id,
                    customer_id="",
                    amount_minor=0,
                    currency="",
                    status=AuthorisationStatus.VOIDED,
                )
            )
            return self._outcome(
                request.key, AuthorisationStatus.VOIDED, message="nothing was authorised"
            )
        if authorisation.status == AuthorisationStatus.CAPTURED:
            raise _invalid(f"authorisation {request.key} is captured; it cannot be voided")
        if authorisation.status != AuthorisationStatus.AUTHORISED:
            return self._outcome(
                request.key, authorisation.status, message="nothing was open to void"
            )
        authorisation.status = AuthorisationStatus.VOIDED
        authorisation.updated_at = utcnow()
        session.add(authorisation)
        self._publish(session, events.PaymentVoided(region=self.region, order_id=request.order_id))
        return self._outcome(
            request.key, AuthorisationStatus.VOIDED, gateway_ref=authorisation.gateway_ref
        )

    def _record_capture(
        self, session: Session, request: AuthorisationKey, capture_ref: str
    ) -> StepOutcome:
        authorisation = session.get(Authorisation, request.key)
        if authorisation is None or authorisation.status != AuthorisationStatus.AUTHORISED:
            raise _invalid(f"authorisation {request.key} changed while capturing")
        authorisation.status = AuthorisationStatus.CAPTURED
        authorisation.updated_at = utcnow()
        session.add(authorisation)
        session.add(
            Capture(
                authorisation_key=request.key,
                order_id=request.order_id,
                amount_minor=authorisation.amount_minor,
                currency=authorisation.currency,
                gateway_ref=capture_ref,
            )
        )
        self._publish(
            session,
            events.PaymentCaptured(
                region=self.region,
                order_id=request.order_id,
                amount=from_minor(authorisation.amount_minor),
                currency=authorisation.currency,
            ),
        )
        return self._outcome(request.key, AuthorisationStatus.CAPTURED, gateway_ref=capture_ref)


def _gateway_ref(authorisation: Authorisation) -> str:
    if authorisation.gateway_ref is None:
        raise _invalid(f"authorisation {authorisation.key} has no gateway reference")
    return authorisation.gateway_ref


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.INVALID_TRANSITION, non_retryable=True)
