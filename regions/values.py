"""The values every layer passes around: statuses and the shapes of stock and allocations.

Declared once here, the lowest layer that stores or publishes them; free of database imports
so the workflow sandbox passes them through. No class docstrings: they would become
descriptions in the published event schemas and the OpenAPI document.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class SagaStatus(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    NEEDS_ATTENTION = "needs_attention"


class Reason(StrEnum):
    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    CANCELLED = "cancelled"


class ReservationStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"
    COMMITTED = "committed"
    REJECTED = "rejected"


class AuthorisationStatus(StrEnum):
    AUTHORISED = "authorised"
    DECLINED = "declined"
    VOIDED = "voided"
    CAPTURED = "captured"


class Allocation(BaseModel):
    region: str
    sku: str
    quantity: int


class StockLine(BaseModel):
    sku: str
    quantity: int


class Shortage(BaseModel):
    sku: str
    requested: int
    available: int
