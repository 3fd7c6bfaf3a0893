"""Names, inputs and outputs of the region activities, shared by workflows and workers.

Kept free of database imports so the workflow sandbox can pass it through cheaply.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from regions.events import Envelope
from regions.values import Allocation, Reason, SagaStatus, Shortage, StockLine


class ActivityName(StrEnum):
    CHECK_STOCK = "check_stock"
    RESERVE_STOCK = "reserve_stock"
    RELEASE_STOCK = "release_stock"
    COMMIT_STOCK = "commit_stock"
    AUTHORISE_PAYMENT = "authorise_payment"
    VOID_PAYMENT = "void_payment"
    CAPTURE_PAYMENT = "capture_payment"
    RECORD_OUTCOME = "record_outcome"
    READ_OUTBOX = "read_outbox"
    APPLY_EVENTS = "apply_events"
    REPLICATION_CURSOR = "replication_cursor"
    SWEEP_INBOX = "sweep_inbox"
    CLEAR_CART = "clear_cart"
    NOOP = "noop"


class ErrorType(StrEnum):
    """`ApplicationError.type` of the failures a saga reacts to by name."""

    OUT_OF_STOCK = "OutOfStock"
    PAYMENT_DECLINED = "PaymentDeclined"
    INVALID_TRANSITION = "InvalidTransition"


class StockCheck(BaseModel):
    skus: list[str]


class StockAvailability(BaseModel):
    region: str
    available: dict[str, int]
    # The asking region's replicated view of the others: region → SKU → available.
    elsewhere: dict[str, dict[str, int]] = Field(default_factory=dict)


class ReserveStock(BaseModel):
    key: str
    order_id: str
    lines: list[StockLine]

    # Checked where units are taken; events carry lines as they were recorded.
    @field_validator("lines")
    @classmethod
    def _positive(cls, lines: list[StockLine]) -> list[StockLine]:
        if any(line.quantity <= 0 for line in lines):
            raise ValueError("every quantity reserved must be greater than 0")
        return lines


class ReservationKey(BaseModel):
    """Names a reservation for release or commit by the key it was taken with."""

    key: str
    order_id: str


class AuthorisePayment(BaseModel):
    key: str
    order_id: str
    customer_id: str
    amount: Decimal
    currency: str
    payment_token: str


class AuthorisationKey(BaseModel):
    """Names an authorisation for void or capture by the key it was taken with."""

    key: str
    order_id: str


class OrderOutcome(BaseModel):
    """The saga's final word on an order, published by its home region."""

    key: str
    order_id: str
    customer_id: str
    status: SagaStatus
    reason: Reason | None
    total: Decimal
    currency: str
    allocations: list[Allocation]


class ClearCart(BaseModel):
    key: str
    order_id: str
    customer_id: str
    versions: dict[str, dict[str, int]]


class StepOutcome(BaseModel):
    """What a mutating activity did; a repeat with the same key returns the first outcome."""

    key: str
    region: str
    status: str
    lines: list[StockLine] = Field(default_factory=list)
    shortages: list[Shortage] = Field(default_factory=list)
    gateway_ref: str | None = None
    message: str | None = None
    attempt: int = 1
    repeated: bool = False


class ReadOutbox(BaseModel):
    after_id: int
    limit: int
    wait_seconds: float
    linger_seconds: float = 0.0
    # Ship before the linger is up once the source has written nothing for this long
    # (0: always linger).
    settle_seconds: float = 0.0


class OutboxBatch(BaseModel):
    events: list[Envelope]


class ApplyEvents(BaseModel):
    source_region: str
    events: list[Envelope]


class AppliedEvents(BaseModel):
    applied: int
    duplicates: int
    held_back: int
    dead_lettered: int
    conflicts: int


class CursorRequest(BaseModel):
    source_region: str


class SweepInbox(BaseModel):
    """Retry the source's events waiting in the destination's inbox; dead-letter stuck ones."""

    source_region: str
