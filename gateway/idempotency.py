"""Every write runs once per Idempotency-Key: its first answer is kept in the transaction of
the write it made, and a repeat of the key with the same request gets that answer again.

Requests racing on one key are settled by the kept answer's primary key: the first inserts
its row before doing anything, the others wait on that row (PostgreSQL) or the write lock
(SQLite), and once it commits they fail on the key, or find it, and answer what it kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.models import KeptAnswer
from gateway.schemas import ErrorBody
from gateway.store import GatewayStore

# A request that lost the race to a key (or to a reference) looks again this many times.
_RACES = 5
_IN_PROGRESS = 0


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    replayed: bool = False

    @classmethod
    def of(cls, status: int, body: BaseModel) -> Answer:
        return cls(status, body.model_dump_json())

    @classmethod
    def error(cls, status: int, detail: str) -> Answer:
        return cls(status, ErrorBody(detail=detail).model_dump_json())

    @property
    def transient(self) -> bool:
        """A 503 is never kept: the caller is to try again with the same key."""
        return self.status == 503


class Refused(Exception):
    """A final refusal (404, 409, 422): kept for its key like any answer, while whatever the
    operation began is rolled back."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.answer = Answer.error(status, detail)


class Unavailable(Exception):
    """A transient failure: nothing the operation began is written, nothing kept (503)."""


def request_digest(method: str, path: str, body: Mapping[str, Any]) -> str:
    text = json.dumps([method, path, body], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def once(
    store: GatewayStore, key: str, digest: str, operation: Callable[[Session], Answer]
) -> Answer:
    for _ in range(_RACES - 1):
        try:
            return _attempt(store, key, digest, operation)
        except IntegrityError:
            continue  # another request took the key or the reference first: look again
    return _attempt(store, key, digest, operation)


def _attempt(
    store: GatewayStore, key: str, digest: str, operation: Callable[[Session], Answer]
) -> Answer:
    with store.transaction() as session:
        kept = session.get(KeptAnswer, key)
        if kept is not None:
            return _replay(kept, digest)
        holder = KeptAnswer(key=key, request=digest, status_code=_IN_PROGRESS, body="")
        session.add(holder)
        session.flush()
        try:
            with session.begin_nested():
                answer = operation(session)
        except Refused as refused:
            answer = refused.answer
        except Unavailable as unavailable:
            answer = Answer.error(503, str(unavailable))
        if answer.transient:
            # What a transient answer wrote (tok_flaky's count of attempts) stays; the key
            # stays free.
            session.delete(holder)
            return answer
        holder.status_code, holder.body = answer.status, answer.body
        session.add(holder)
        return answer


def _replay(kept: KeptAnswer, digest: str) -> Answer:
    if kept.request != digest:
        return Answer.error(
            409,
            "Idempotency-Key: this key was used with a different request; "
            "send a new key for a new request",
        )
    return Answer(kept.status_code, kept.body, replayed=True)
