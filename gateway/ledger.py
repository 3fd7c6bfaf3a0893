"""The ledger: one entry per state change, appended in the transaction of the change."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from gateway.models import Authorisation, LedgerEntry
from gateway.store import lock_ledger

CONSOLE = "console"


def append(
    session: Session,
    kind: str,
    key: str,
    *,
    reference: str,
    authorisation: Authorisation | None = None,
    amount_minor: int | None = None,
) -> None:
    """`amount_minor` defaults to the authorisation's (a capture gives what it took)."""
    lock_ledger(session)
    if authorisation is not None and amount_minor is None:
        amount_minor = authorisation.amount_minor
    session.add(
        LedgerEntry(
            kind=kind,
            authorisation_id=authorisation.id if authorisation else None,
            reference=reference,
            amount_minor=amount_minor,
            currency=authorisation.currency if authorisation else None,
            idempotency_key=key,
        )
    )


def page(session: Session, after: int, limit: int) -> Sequence[LedgerEntry]:
    query = (
        select(LedgerEntry)
        .where(col(LedgerEntry.seq) > after)
        .order_by(col(LedgerEntry.seq))
        .limit(limit)
    )
    return session.exec(query).all()
