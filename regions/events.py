"""The events regions publish: one declared schema per event type, and the envelope around it.

Every schema is a pydantic model with its type, version and aggregate. A field added later gets
a default (or is derived from older fields), so an older event still reads: bump `version`
when the schema changes, never rename or drop a field. `geosaga event-schemas` exports them.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from regions.values import Allocation, Shortage, StockLine

# Aggregates written by several regions carry a version vector in their envelope.
ORDER = "order"
STOCK = "stock"
CART = "cart"
MULTI_WRITER = frozenset({ORDER, CART})


class Event(BaseModel):
    """A fact; consumers ignore fields newer than they know (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: ClassVar[str]
    version: ClassVar[int] = 1
    aggregate: ClassVar[str]


class OrderEvent(Event):
    aggregate: ClassVar[str] = ORDER
    region: str
    order_id: str


class StockReserved(OrderEvent):
    type: ClassVar[str] = "StockReserved"
    lines: list[StockLine]


class ReservationRejected(OrderEvent):
    type: ClassVar[str] = "ReservationRejected"
    shortages: list[Shortage]


class StockReleased(OrderEvent):
    type: ClassVar[str] = "StockReleased"
    lines: list[StockLine]


class StockCommitted(OrderEvent):
    type: ClassVar[str] = "StockCommitted"
    lines: list[StockLine]


class PaymentAuthorised(OrderEvent):
    type: ClassVar[str] = "PaymentAuthorised"
    amount: Decimal
    currency: str


class PaymentDeclined(OrderEvent):
    type: ClassVar[str] = "PaymentDeclined"
    amount: Decimal
    currency: str
    reason: str | None = None


class PaymentVoided(OrderEvent):
    type: ClassVar[str] = "PaymentVoided"


class PaymentCaptured(OrderEvent):
    type: ClassVar[str] = "PaymentCaptured"
    amount: Decimal
    currency: str


class OrderEnded(OrderEvent):
    """The saga's outcome, from the home region (`region`).

    Version 2 added `regions`; a version 1 event derives it from its allocations.
    """

    type: ClassVar[str] = "OrderEnded"
    version: ClassVar[int] = 2
    customer_id: str
    status: str
    reason: str | None = None
    total: Decimal
    currency: str
    allocations: list[Allocation]
    regions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _regions_from_allocations(self) -> OrderEnded:
        if not self.regions and self.allocations:
            derived = list(dict.fromkeys(a.region for a in self.allocations))
            object.__setattr__(self, "regions", derived)
        return self


class StockLevelChanged(Event):
    """A SKU's levels in the region that owns them, after the change (not a delta)."""

    type: ClassVar[str] = "StockLevelChanged"
    aggregate: ClassVar[str] = STOCK
    region: str
    sku: str
    on_hand: int
    reserved: int
    cause: str
    order_id: str | None = None


class CartChanged(Event):
    """One cart operation (see regions/cart.py), as the region that made it wrote it."""

    type: ClassVar[str] = "CartChanged"
    aggregate: ClassVar[str] = CART
    customer_id: str
    operation: dict[str, Any]


EVENTS: dict[str, type[Event]] = {
    model.type: model
    for model in (
        StockReserved,
        ReservationRejected,
        StockReleased,
        StockCommitted,
        PaymentAuthorised,
        PaymentDeclined,
        PaymentVoided,
        PaymentCaptured,
        OrderEnded,
        StockLevelChanged,
        CartChanged,
    )
}


class UnknownEvent(Exception):
    """No schema for this type, or a version newer than this code knows."""


class Envelope(BaseModel):
    """An event as it travels between regions."""

    event_id: str
    event_type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    source_region: str
    hlc: str
    version_vector: dict[str, int] | None = None
    payload: dict[str, Any]
    outbox_id: int
    created_at: datetime

    def read(self) -> Event:
        """The payload as its schema; an older version reads with the newer schema's defaults."""
        model = EVENTS.get(self.event_type)
        if model is None:
            raise UnknownEvent(f"no schema for event type {self.event_type!r}")
        if self.schema_version > model.version:
            raise UnknownEvent(
                f"{self.event_type} version {self.schema_version} is newer than this code's "
                f"version {model.version}"
            )
        return model.model_validate(self.payload)


# Shared types renamed since their schemas were published keep their published names there.
_PUBLISHED_NAMES = {"Allocation": "Allocated", "StockLine": "Line"}


class _AsPublished(GenerateJsonSchema):
    def normalize_name(self, name: str) -> str:
        return super().normalize_name(_PUBLISHED_NAMES.get(name, name))

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        title = json_schema.get("title")
        if title in _PUBLISHED_NAMES:
            json_schema["title"] = _PUBLISHED_NAMES[title]
        return json_schema


def json_schemas() -> dict[str, Any]:
    """Every event type's JSON Schema, keyed by type, with its version and aggregate."""
    return {
        name: {
            "version": model.version,
            "aggregate": model.aggregate,
            "schema": model.model_json_schema(schema_generator=_AsPublished),
        }
        for name, model in sorted(EVENTS.items())
    }


def dumps(event: Event) -> str:
    return json.dumps(event.model_dump(mode="json"), sort_keys=True)
