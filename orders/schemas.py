"""An order as it is asked for and as it is shown: the bodies the API and the CLI share."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from regions.values import Allocation, Reason, SagaStatus
from workflows.contract import Resolution, Stage, StepRecord

# Identifiers: printable ASCII without spaces or quotes, so they are safe in URLs and queries.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, examples=["cust-42"])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderLineIn(Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64, examples=["SKU-1"])]
    quantity: Annotated[StrictInt, Field(gt=0, examples=[2])]


class OrderRequest(Strict):
    customer_id: Identifier
    home_region: Annotated[str, Field(min_length=1, max_length=32, examples=["us-east"])]
    lines: Annotated[list[OrderLineIn], Field(min_length=1)]
    payment_token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$", examples=["tok_ok"])]


class Links(BaseModel):
    self: str
    ui: str


class OrderAccepted(BaseModel):
    order_id: str
    status: SagaStatus
    links: Links


class OrderLineOut(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal


class OrderView(BaseModel):
    order_id: str
    status: SagaStatus
    reason: Reason | None
    message: str | None
    stage: Stage
    customer_id: str
    home_region: str
    currency: str
    lines: list[OrderLineOut]
    total: Decimal
    allocations: list[Allocation]
    steps: list[StepRecord]
    compensations: list[StepRecord]
    resolutions: list[Resolution]
    workflow_status: str
    links: Links


class OrderSummary(BaseModel):
    order_id: str
    status: SagaStatus | None
    reason: Reason | None
    customer_id: str | None
    home_region: str | None
    regions: list[str]
    workflow_status: str
    started_at: datetime | None
    closed_at: datetime | None
    links: Links
