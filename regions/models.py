"""The tables of a region's store. Every region has the same schema in its own database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from regions.values import AuthorisationStatus, ReservationStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def age_seconds(now: datetime, then: datetime) -> float:
    """How long ago `then` was, never negative."""
    if then.tzinfo is None:  # SQLite hands back naive UTC
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())


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


class OrderRequest(SQLModel, table=True):
    """An `Idempotency-Key` an order was accepted under, kept in the order's home region.

    Temporal forgets a saga once its namespace's retention has passed; this row does not, so a
    key used again after that answers with the first order instead of starting a second saga
    whose steps would all find their idempotency keys already spent.
    """

    __tablename__ = "order_request"

    order_id: str = Field(primary_key=True, max_length=200)
    request_sha256: str = Field(max_length=64)
    # Set once Temporal has taken the start: a row without it may never have started a saga.
    started: bool = False
    created_at: datetime = _timestamp()


class OutboxEvent(SQLModel, table=True):
    """Facts this region publishes, written in the same transaction as the change they describe.

    `id` orders the region's whole stream (relays read by it); `sequence` orders one
    aggregate's events from this region (consumers apply them in that order).
    """

    __tablename__ = "outbox_event"
    __table_args__ = (
        UniqueConstraint("aggregate_type", "aggregate_id", "sequence", name="outbox_sequence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=36)
    event_type: str = Field(max_length=64)
    schema_version: int
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(index=True, max_length=200)
    sequence: int
    source_region: str = Field(max_length=32)
    hlc: str = Field(max_length=64)
    version_vector: str | None = Field(default=None, sa_type=Text)
    payload: str = Field(sa_type=Text)
    created_at: datetime = _timestamp()


class AggregateSequence(SQLModel, table=True):
    """The last sequence number this region gave an aggregate's events."""

    __tablename__ = "aggregate_sequence"

    aggregate_type: str = Field(primary_key=True, max_length=32)
    aggregate_id: str = Field(primary_key=True, max_length=200)
    last_sequence: int = 0


class ClockState(SQLModel, table=True):
    """The region's hybrid logical clock, shared by every process writing to this store."""

    __tablename__ = "clock_state"

    region: str = Field(primary_key=True, max_length=32)
    wall_ms: int = Field(sa_type=BigInteger)
    logical: int


class ProcessedKey(SQLModel, table=True):
    """An idempotency key and the result it produced; a repeat returns this result unchanged."""

    __tablename__ = "processed_key"

    key: str = Field(primary_key=True, max_length=200)
    operation: str = Field(max_length=64)
    result: str = Field(sa_type=Text)
    created_at: datetime = _timestamp()


# Replication: what this region received from the others --------------------------------------


class ProcessedEvent(SQLModel, table=True):
    """Events applied here, recorded in the same transaction as their effect."""

    __tablename__ = "processed_event"

    event_id: str = Field(primary_key=True, max_length=36)
    source_region: str = Field(max_length=32)
    applied_at: datetime = _timestamp()


class AggregateProgress(SQLModel, table=True):
    """The last sequence applied here of one aggregate's events from one source region."""

    __tablename__ = "aggregate_progress"
    # A local write's version vector looks its aggregate up across every source region.
    __table_args__ = (Index("ix_aggregate_progress_aggregate", "aggregate_type", "aggregate_id"),)

    source_region: str = Field(primary_key=True, max_length=32)
    aggregate_type: str = Field(primary_key=True, max_length=32)
    aggregate_id: str = Field(primary_key=True, max_length=200)
    last_sequence: int = 0


class InboxEvent(SQLModel, table=True):
    """An event received but not applied yet: held for its predecessor, or failing
    (`last_error`). The sweep drains it (regions/replication.py)."""

    __tablename__ = "inbox_event"
    # The sweep and the lag read a source's waiting events aggregate by aggregate, in order.
    __table_args__ = (
        Index(
            "ix_inbox_event_source_aggregate",
            "source_region",
            "aggregate_type",
            "aggregate_id",
            "sequence",
        ),
    )

    event_id: str = Field(primary_key=True, max_length=36)
    source_region: str = Field(max_length=32)
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(index=True, max_length=200)
    sequence: int
    envelope: str = Field(sa_type=Text)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    received_at: datetime = _timestamp()
    # When the source wrote it: lag counts from there (None: received before revision 0004).
    created_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DeadLetter(SQLModel, table=True):
    """An event that could not be applied after N attempts; an operator can re-drive it."""

    __tablename__ = "dead_letter"

    event_id: str = Field(primary_key=True, max_length=36)
    source_region: str = Field(max_length=32)
    event_type: str = Field(max_length=64)
    aggregate_type: str = Field(max_length=32)
    aggregate_id: str = Field(max_length=200)
    envelope: str = Field(sa_type=Text)
    attempts: int
    error: str = Field(sa_type=Text)
    dead_at: datetime = _timestamp()


class ReplicationSource(SQLModel, table=True):
    """Per source region: how far its stream is delivered here, and what applying it did."""

    __tablename__ = "replication_source"

    source_region: str = Field(primary_key=True, max_length=32)
    delivered_through: int = 0
    applied: int = 0
    duplicates: int = 0
    held_back: int = 0
    conflicts_detected: int = 0
    conflicts_resolved: int = 0
    dead_lettered: int = 0
    last_event_created_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_at: datetime = _timestamp()


# Read models, built only from replicated events ---------------------------------------------


class OrderView(SQLModel, table=True):
    """What this region knows of an order, wherever it ran."""

    __tablename__ = "order_view"

    order_id: str = Field(primary_key=True, max_length=200)
    customer_id: str | None = Field(default=None, max_length=64)
    home_region: str | None = Field(default=None, max_length=32)
    status: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=32)
    total_minor: int | None = None
    currency: str | None = Field(default=None, max_length=3)
    regions: str = Field(default="[]", sa_type=Text)
    # Last-writer-wins on the hybrid logical clock; the version vector spots concurrent writes.
    status_hlc: str = Field(max_length=64)
    version_vector: str = Field(default="{}", sa_type=Text)
    updated_at: datetime = _timestamp()


class StockView(SQLModel, table=True):
    """Another region's stock as its events last said (this region's own included)."""

    __tablename__ = "stock_view"

    region: str = Field(primary_key=True, max_length=32)
    sku: str = Field(primary_key=True, max_length=64)
    on_hand: int
    reserved: int
    hlc: str = Field(max_length=64)
    updated_at: datetime = _timestamp()


class CartOperation(SQLModel, table=True):
    """One operation of a customer's cart CRDT, made here or replicated from elsewhere."""

    __tablename__ = "cart_operation"

    customer_id: str = Field(primary_key=True, max_length=64)
    dot_region: str = Field(primary_key=True, max_length=32)
    dot_counter: int = Field(primary_key=True)
    sku: str = Field(max_length=64)
    operation: str = Field(sa_type=Text)
