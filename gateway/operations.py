"""What each write does to the gateway's books, inside the transaction `idempotency.once` (or
the console) opens: authorise, capture, void, cancel a reference, release in the console.

Locks are taken in one order, reference first and then its authorisation, so that writes on
one reference take turns and never wait on each other in a circle.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from gateway import ledger, tokens
from gateway.idempotency import Answer, Refused, Unavailable
from gateway.models import Authorisation, Reference, utcnow
from gateway.money import from_minor, to_minor
from gateway.schemas import AuthorisationRequest, AuthorisationView, CancelView

AUTHORISED = "authorised"
DECLINED = "declined"
CAPTURED = "captured"
VOIDED = "voided"
CANCELLED = "cancelled"


def authorise(session: Session, body: AuthorisationRequest, key: str) -> Answer:
    reference = lock_reference(session, body.reference)
    existing = session.exec(
        select(Authorisation).where(Authorisation.reference == body.reference)
    ).first()
    if existing is not None:
        raise Refused(
            409,
            f"reference: {body.reference!r} already has authorisation {existing.id}, "
            "made under another Idempotency-Key",
        )
    reason: str | None
    if reference.cancelled_at is not None:
        status, reason = VOIDED, "the reference was cancelled before this authorisation arrived"
    else:
        reference.attempts += 1
        session.add(reference)
        decision = tokens.decide(body.token, reference.attempts)
        if decision.unavailable:
            return Answer.error(503, decision.reason or "try again")
        status, reason = decision.status, decision.reason
    row = Authorisation(
        id=f"auth_{uuid.uuid4().hex}",
        reference=body.reference,
        idempotency_key=key,
        token=body.token,
        amount_minor=to_minor(body.amount),
        currency=body.currency,
        status=status,
        reason=reason,
    )
    session.add(row)
    ledger.append(session, row.status, key, reference=row.reference, authorisation=row)
    return Answer.of(201, AuthorisationView.of(row))


def capture(session: Session, authorisation_id: str, amount_minor: int, key: str) -> Answer:
    row = locked_authorisation(session, authorisation_id)
    if row.status != AUTHORISED:
        raise Refused(
            409, f"authorisation {row.id} is {row.status}; only an authorised one is captured"
        )
    if amount_minor > row.amount_minor:
        raise Refused(
            422,
            f"amount: {from_minor(amount_minor)} is more than the "
            f"{from_minor(row.amount_minor)} {row.currency} held",
        )
    row.status, row.captured_minor, row.updated_at = CAPTURED, amount_minor, utcnow()
    session.add(row)
    ledger.append(
        session,
        CAPTURED,
        key,
        reference=row.reference,
        authorisation=row,
        amount_minor=amount_minor,
    )
    return Answer.of(200, AuthorisationView.of(row))


def void(session: Session, authorisation_id: str, key: str) -> Answer:
    row = locked_authorisation(session, authorisation_id)
    if row.status == CAPTURED:
        raise Refused(409, f"authorisation {row.id} is captured; a capture cannot be voided")
    if row.status == AUTHORISED:
        _refuse_unvoidable(row)
        _void(session, row, key, "voided by the merchant")
    return Answer.of(200, AuthorisationView.of(row))


def cancel(session: Session, reference_text: str, key: str) -> Answer:
    """A technical cancel: voids whatever is open under the reference, and makes any
    authorisation that arrives later under it void at once."""
    reference = lock_reference(session, reference_text)
    rows = session.exec(
        select(Authorisation).where(Authorisation.reference == reference_text).with_for_update()
    ).all()
    captured = [row.id for row in rows if row.status == CAPTURED]
    if captured:
        raise Refused(409, f"reference {reference_text!r} is captured ({', '.join(captured)})")
    held = [row for row in rows if row.status == AUTHORISED]
    for row in held:
        _refuse_unvoidable(row)
    first = reference.cancelled_at is None
    if first:
        reference.cancelled_at = utcnow()
        session.add(reference)
    for row in held:
        _void(session, row, key, "the reference was cancelled")
    if first and not rows:
        ledger.append(session, CANCELLED, key, reference=reference_text)
    views = [AuthorisationView.of(row) for row in rows]
    return Answer.of(200, CancelView(reference=reference_text, authorisations=views))


def release(session: Session, authorisation_id: str) -> AuthorisationView:
    """What a person does in the processor's console: the hold goes, whatever its card."""
    row = locked_authorisation(session, authorisation_id)
    if row.status == CAPTURED:
        raise Refused(409, f"authorisation {row.id} is captured; there is no hold to release")
    if row.status == AUTHORISED:
        _void(session, row, ledger.CONSOLE, "released in the console")
    return AuthorisationView.of(row)


def lock_reference(session: Session, reference: str) -> Reference:
    """The reference's row, locked until the transaction ends (made when it is new)."""
    found = _locked_reference(session, reference)
    if found is None:
        try:
            with session.begin_nested():
                session.add(Reference(reference=reference))
        except IntegrityError:
            pass  # another request made it meanwhile: wait for that one's turn below
        found = _locked_reference(session, reference)
    if found is None:
        raise RuntimeError(f"reference {reference!r} vanished while it was locked")
    return found


def locked_authorisation(session: Session, authorisation_id: str) -> Authorisation:
    row = session.exec(
        select(Authorisation).where(Authorisation.id == authorisation_id).with_for_update()
    ).first()
    if row is None:
        raise Refused(404, f"no authorisation {authorisation_id}")
    return row


def _locked_reference(session: Session, reference: str) -> Reference | None:
    return session.exec(
        select(Reference).where(Reference.reference == reference).with_for_update()
    ).first()


def _refuse_unvoidable(row: Authorisation) -> None:
    if not tokens.voidable(row.token):
        raise Unavailable(
            f"authorisation {row.id} ({row.token}) cannot be voided through the API; "
            "release it in the console"
        )


def _void(session: Session, row: Authorisation, key: str, reason: str) -> None:
    row.status, row.reason, row.updated_at = VOIDED, reason, utcnow()
    session.add(row)
    ledger.append(session, VOIDED, key, reference=row.reference, authorisation=row)
