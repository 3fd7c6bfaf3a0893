"""The tables of a region's store. Every region has the same schema in its own database."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp() -> datetime:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[no-any-return]


class Stock(SQLModel, table=True):
    """Physical stock (`on_hand`) and the part of it held by running sagas (`reserved`)."""

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="stock_on_hand_not_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="stock_reserved_in_range"),
    )

    sku: str = Field(primary_key=True, max_length=64)
    on_hand: int = 0
    reserved: int = 0
    updated_at: datetime = _timestamp()

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class ReservationStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"
    COMMITTED = "committed"
    REJECTED = "rejected"


class Reservation(SQLModel, table=True):
    """One saga's hold on stock in this region, keyed by the saga step's idempotency key.

    A release that arrives before its reservation leaves a `released` row with no lines, so the
    late reservation finds it and takes nothing.
    """

    key: str = Field(primary_key=True, max_length=200)
    order_id: str = Field(index=True, max_length=200)
    status: ReservationStatus = Field(max_length=16)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class ReservationLine(SQLModel, table=True):
    __tablename__ = "reservation_line"

    reservation_key: str = Field(primary_key=True, foreign_key="reservation.key", max_length=200)
    sku: str = Field(primary_key=True, max_length=64)
    quantity: int


class AuthorisationStatus(StrEnum):
    AUTHORISED = "authorised"
    DECLINED = "declined"
    VOIDED = "voided"
    CAPTURED = "captured"


class Authorisation(SQLModel, table=True):
    """A payment authorisation in the customer's home region.

    A void that arrives before its authorisation leaves a `voided` row without a gateway
    reference, so the late authorisation is voided at once.
    """

    key: str = Field(primary_key=True, max_length=200)
    order_id: str = Field(index=True, max_length=200)
    customer_id: str = Field(max_length=64)
    amount_minor: int
    currency: str = Field(max_length=3)
    status: AuthorisationStatus = Field(max_length=16)
    gateway_ref: str | None = Field(default=None, max_length=100)
    decline_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Capture(SQLModel, table=True):
    authorisation_key: str = Field(
        primary_key=True, foreign_key="authorisation.key", max_length=200
    )
    order_id: str = Field(index=True, max_length=200)
    amount_minor: int
    currency: str = Field(max_length=3)
    gateway_ref: str = Field(max_length=100)
    created_at: datetime = _timestamp()


class OutboxEvent(SQLModel, table=True):
    """Facts this region publishes, written in the same transaction as the change they describe."""

    __tablename__ = "outbox_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=36)
    event_type: str = Field(max_length=64)
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(index=True, max_length=200)
    payload: str = Field(sa_type=Text)
    created_at: datetime = _timestamp()


class ProcessedKey(SQLModel, table=True):
    """An idempotency key and the result it produced; a repeat returns this result unchanged."""

    __tablename__ = "processed_key"

    key: str = Field(primary_key=True, max_length=200)
    operation: str = Field(max_length=64)
    result: str = Field(sa_type=Text)
    created_at: datetime = _timestamp()
