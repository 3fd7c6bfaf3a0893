"""What the gateway's endpoints take and answer (docs/gateway.md, "Objects" and "Endpoints")."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import Authorisation, LedgerEntry
from gateway.money import from_minor

Amount = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2, examples=["24.00"])]
MAX_LEDGER_PAGE = 1000


class AuthorisationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=200, examples=["order-k1/authorise/us-east"])
    token: str = Field(min_length=1, max_length=64, examples=["tok_ok"])
    amount: Amount
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["USD"])


class CaptureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=200)


class AuthorisationView(BaseModel):
    id: str
    reference: str
    amount: Decimal
    currency: str
    status: str
    reason: str | None
    captured_amount: Decimal | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Authorisation) -> AuthorisationView:
        return cls(
            id=row.id,
            reference=row.reference,
            amount=from_minor(row.amount_minor),
            currency=row.currency,
            status=row.status,
            reason=row.reason,
            captured_amount=None if row.captured_minor is None else from_minor(row.captured_minor),
            created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at),
        )


class AuthorisationList(BaseModel):
    authorisations: list[AuthorisationView]


class CancelView(BaseModel):
    reference: str
    authorisations: list[AuthorisationView]


class LedgerEntryView(BaseModel):
    seq: int
    at: datetime
    kind: str
    authorisation_id: str | None
    reference: str
    amount: Decimal | None
    currency: str | None
    idempotency_key: str

    @classmethod
    def of(cls, row: LedgerEntry) -> LedgerEntryView:
        assert row.seq is not None  # a row read back from the table has its number
        return cls(
            seq=row.seq,
            at=_utc(row.at),
            kind=row.kind,
            authorisation_id=row.authorisation_id,
            reference=row.reference,
            amount=None if row.amount_minor is None else from_minor(row.amount_minor),
            currency=row.currency,
            idempotency_key=row.idempotency_key,
        )


class LedgerPage(BaseModel):
    entries: list[LedgerEntryView]
    # The `after` of the next page: the last entry's seq (or the `after` asked for).
    next: int


class ErrorBody(BaseModel):
    detail: str


def _utc(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
