"""The gateway's tables, on a registry (and metadata) of their own: the region stores'
migrations compare `SQLModel.metadata` with their databases and must never see these."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp() -> datetime:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[no-any-return]


class GatewayModel(SQLModel, registry=registry()):
    pass


class Reference(GatewayModel, table=True):
    """A merchant reference: locked by every write under it, so that an authorisation and a
    cancel of one reference take turns. `attempts` counts tok_flaky's tries."""

    __tablename__ = "gateway_reference"

    reference: str = Field(primary_key=True, max_length=200)
    cancelled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = 0


class Authorisation(GatewayModel, table=True):
    __tablename__ = "gateway_authorisation"

    id: str = Field(primary_key=True, max_length=40)
    # At most one authorisation per reference.
    reference: str = Field(unique=True, max_length=200)
    idempotency_key: str = Field(max_length=200)
    token: str = Field(max_length=64)
    amount_minor: int
    currency: str = Field(max_length=3)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=200)
    captured_minor: int | None = None
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class LedgerEntry(GatewayModel, table=True):
    """Append-only: one row per state change, written in the change's transaction."""

    __tablename__ = "gateway_ledger"

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime = _timestamp()
    kind: str = Field(max_length=16)
    authorisation_id: str | None = Field(default=None, index=True, max_length=40)
    reference: str = Field(index=True, max_length=200)
    amount_minor: int | None = None
    currency: str | None = Field(default=None, max_length=3)
    idempotency_key: str = Field(max_length=200)


class KeptAnswer(GatewayModel, table=True):
    """The first answer to an Idempotency-Key, kept in the transaction of the write it made.

    `request` is a digest of what was asked, so that the key reused for something else is
    refused; `status_code` 0 marks a write still in progress (its row holds the key)."""

    __tablename__ = "gateway_idempotency"

    key: str = Field(primary_key=True, max_length=200)
    request: str = Field(max_length=64)
    status_code: int
    body: str = Field(sa_type=Text)
    created_at: datetime = _timestamp()
