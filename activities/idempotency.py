"""Exactly one effect per idempotency key, recorded in the same transaction as the effect."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from activities.contract import StepOutcome
from regions.models import ProcessedKey
from regions.store import Store


def processed_key(operation: str, key: str) -> str:
    return f"{operation}:{key}"


def previous_outcome(store: Store, operation: str, key: str) -> StepOutcome | None:
    with store.reading() as session:
        return _stored(session, processed_key(operation, key))


def once(
    store: Store, operation: str, key: str, effect: Callable[[Session], StepOutcome]
) -> StepOutcome:
    """Runs `effect` and records its outcome under the key, in one transaction.

    A key already recorded returns its outcome with `repeated=True` and runs nothing. Two
    deliveries racing on one key both run the effect, but only one commits: the other fails on
    the key's primary key, rolls back, and returns the winner's outcome.
    """
    stored_key = processed_key(operation, key)
    try:
        with store.transaction() as session:
            previous = _stored(session, stored_key)
            if previous is not None:
                return previous
            outcome = effect(session)
            session.add(
                ProcessedKey(key=stored_key, operation=operation, result=outcome.model_dump_json())
            )
            session.flush()
        return outcome
    except IntegrityError:
        with store.reading() as session:
            previous = _stored(session, stored_key)
        if previous is None:
            raise
        return previous


def _stored(session: Session, stored_key: str) -> StepOutcome | None:
    row = session.get(ProcessedKey, stored_key)
    if row is None:
        return None
    return StepOutcome.model_validate_json(row.result).model_copy(update={"repeated": True})
