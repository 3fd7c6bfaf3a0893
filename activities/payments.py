"""Payment activities of the customer's home region: authorise, void (compensation), capture.

The gateway is called outside the store transaction (it is another system); its calls are
idempotent on the step's key, so a retry after a crash between the two finds the same result.
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
from regions.models import Authorisation, AuthorisationStatus, Capture, utcnow
from regions.money import from_minor, to_minor
from regions.store import Store


class PaymentActivities(RegionBound):
    """Bound to one region's store and gateway; registered only on that region's task queue."""

    def __init__(self, store: Store, gateway: PaymentGateway) -> None:
        super().__init__(store)
        self._gateway = gateway

    def all(self) -> Sequence[Callable[..., Any]]:
        return [self.authorise_payment, self.void_payment, self.capture_payment]

    @activity.defn(name=ActivityName.AUTHORISE_PAYMENT)
    def authorise_payment(self, request: AuthorisePayment) -> StepOutcome:
        outcome = previous_outcome(self._store, "authorise", request.key)
        if outcome is None:
            decision = self._gateway.authorise(
                key=request.key,
                token=request.payment_token,
                amount=request.amount,
                currency=request.currency,
            )
            outcome = once(
                self._store,
                "authorise",
                request.key,
                lambda session: self._record_authorisation(session, request, decision),
            )
            if outcome.status == AuthorisationStatus.VOIDED and outcome.gateway_ref:
                # A void overtook this authorisation: undo what the gateway just granted.
                self._gateway.void(outcome.gateway_ref)
        outcome = with_attempt(outcome)
        if outcome.status == AuthorisationStatus.DECLINED:
            raise refusal(outcome, ErrorType.PAYMENT_DECLINED)
        return outcome

    @activity.defn(name=ActivityName.VOID_PAYMENT)
    def void_payment(self, request: AuthorisationKey) -> StepOutcome:
        outcome = previous_outcome(self._store, "void", request.key)
        if outcome is None:
            with self._store.reading() as session:
                seen = session.get(Authorisation, request.key)
            voided_ref = None
            if seen is not None and seen.status == AuthorisationStatus.AUTHORISED:
                voided_ref = _gateway_ref(seen)
                self._gateway.void(voided_ref)
            outcome = once(
                self._store,
                "void",
                request.key,
                lambda session: self._record_void(session, request, voided_ref),
            )
        return with_attempt(outcome)

    @activity.defn(name=ActivityName.CAPTURE_PAYMENT)
    def capture_payment(self, request: AuthorisationKey) -> StepOutcome:
        outcome = previous_outcome(self._store, "capture", request.key)
        if outcome is None:
            with self._store.reading() as session:
                authorisation = session.get(Authorisation, request.key)
            if authorisation is None or authorisation.status != AuthorisationStatus.AUTHORISED:
                status = "missing" if authorisation is None else authorisation.status
                raise _invalid(f"authorisation {request.key} is {status}; it cannot be captured")
            try:
                capture_ref = self._gateway.capture(
                    _gateway_ref(authorisation), from_minor(authorisation.amount_minor)
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
                lambda session: self._record_capture(session, request, capture_ref),
            )
        return with_attempt(outcome)

    def _record_authorisation(
        self, session: Session, request: AuthorisePayment, decision: GatewayAuthorisation
    ) -> StepOutcome:
        existing = session.get(Authorisation, request.key)
        if existing is not None:
            # Only a void tombstone can be here: remember the grant so the caller voids it.
            existing.gateway_ref = decision.ref
            existing.updated_at = utcnow()
            session.add(existing)
            return self._outcome(
                request.key,
                AuthorisationStatus.VOIDED,
                gateway_ref=decision.ref,
                message="a void overtook this authorisation",
            )
        status = (
            AuthorisationStatus.AUTHORISED if decision.approved else AuthorisationStatus.DECLINED
        )
        session.add(
            Authorisation(
                key=request.key,
                order_id=request.order_id,
                customer_id=request.customer_id,
                amount_minor=to_minor(request.amount),
                currency=request.currency,
                status=status,
                gateway_ref=decision.ref,
                decline_reason=decision.decline_reason,
            )
        )
        common = {
            "region": self.region,
            "order_id": request.order_id,
            "amount": request.amount,
            "currency": request.currency,
        }
        self._publish(
            session,
            events.PaymentAuthorised(**common)
            if decision.approved
            else events.PaymentDeclined(**common, reason=decision.decline_reason),
        )
        return self._outcome(
            request.key,
            status,
            gateway_ref=decision.ref,
            message=None if decision.approved else f"payment declined: {decision.decline_reason}",
        )

    def _record_void(
        self, session: Session, request: AuthorisationKey, voided_ref: str | None
    ) -> StepOutcome:
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
        if voided_ref != authorisation.gateway_ref:
            raise ApplicationError(
                "the authorisation appeared while voiding; the next attempt voids it"
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
