"""Request and response bodies of the HTTP API beside the orders' own (orders/schemas.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt

from orders.schemas import Links, Strict


class ActionAccepted(BaseModel):
    order_id: str
    accepted: bool
    message: str
    links: Links


class ResolutionIn(Strict):
    resolved_by: Annotated[str, Field(min_length=1, max_length=100, examples=["ops@example.com"])]
    note: Annotated[
        str, Field(min_length=1, max_length=1000, examples=["voided by hand in the gateway"])
    ]


class RerunAccepted(BaseModel):
    order_id: str
    action: Literal["reset", "restarted"]
    run_id: str
    links: Links


class Product(BaseModel):
    sku: str
    name: str
    unit_price: Decimal
    currency: str


class RegionOut(BaseModel):
    name: str
    task_queue: str


class StockOut(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int


class StockUpdate(Strict):
    on_hand: Annotated[StrictInt, Field(ge=0, le=1_000_000)]


class Health(BaseModel):
    status: str
    temporal: str
    namespace: str


class ErrorBody(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A 422: each field that is wrong, and one message that names them all."""

    detail: list[FieldError]
    message: Annotated[str, Field(examples=["lines[0].quantity: Input should be greater than 0"])]
