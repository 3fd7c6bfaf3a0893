"""The order saga's contract: its name, queues, messages and state, shared by API and workers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey

from foundation.settings import SagaTiming
from regions.values import Allocation, Reason, SagaStatus

WORKFLOW_NAME = "OrderSaga"
WORKFLOW_ID_PREFIX = "order-"


def workflow_id(order_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{order_id}"


class Stage(StrEnum):
    PLANNING = "planning"
    RESERVING = "reserving"
    AUTHORISING = "authorising"
    CAPTURING = "capturing"
    COMMITTING = "committing"
    COMPENSATING = "compensating"
    DONE = "done"


class StepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"
    # An operator recorded that they undid this step by hand.
    RESOLVED = "resolved"


# Registered by the dev server flags and `geosaga setup`; kept current by the saga.
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
HOME_REGION = SearchAttributeKey.for_keyword("HomeRegion")
SAGA_STATUS = SearchAttributeKey.for_keyword("SagaStatus")
SAGA_REASON = SearchAttributeKey.for_keyword("SagaReason")
SAGA_REGIONS = SearchAttributeKey.for_keyword_list("SagaRegions")
SEARCH_ATTRIBUTES = (ORDER_ID, CUSTOMER_ID, HOME_REGION, SAGA_STATUS, SAGA_REASON, SAGA_REGIONS)


class OrderLine(BaseModel):
    sku: str
    quantity: int = Field(gt=0)
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


class SagaOptions(SagaTiming):
    """Timing chosen by the API from settings, carried in the input so replays see the same."""

    @classmethod
    def from_settings(cls, settings: SagaTiming) -> SagaOptions:
        return cls.model_validate(settings.model_dump(include=set(SagaTiming.model_fields)))


class CartCheckout(BaseModel):
    """The cart an order came from; the saga takes these versions out of it once completed."""

    customer_id: str
    region: str
    versions: dict[str, dict[str, int]]


class OrderInput(BaseModel):
    order_id: str
    customer_id: str
    home_region: str
    currency: str
    lines: list[OrderLine]
    payment_token: str
    # Every region the saga may use, in preference order, with its activity task queue.
    regions: dict[str, str]
    options: SagaOptions = Field(default_factory=SagaOptions)
    cart: CartCheckout | None = None

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0"))


class StepRecord(BaseModel):
    """One forward step or compensation, as the step table in the API and Web UI shows it."""

    name: str
    region: str
    status: StepStatus
    detail: str
    attempts: int = 0
    error: str | None = None
    started_at: datetime
    finished_at: datetime | None = None


class Resolution(BaseModel):
    """An operator's record that they finished stuck compensations by hand."""

    resolved_by: str
    note: str
    at: datetime
    compensations: list[str]


class SagaState(BaseModel):
    order_id: str
    customer_id: str
    home_region: str
    currency: str
    lines: list[OrderLine]
    total: Decimal
    status: SagaStatus = SagaStatus.ACCEPTED
    stage: Stage = Stage.PLANNING
    reason: Reason | None = None
    message: str | None = None
    allocations: list[Allocation] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    compensations: list[StepRecord] = Field(default_factory=list)
    resolutions: list[Resolution] = Field(default_factory=list)

    @classmethod
    def begin(cls, order: OrderInput) -> SagaState:
        return cls(
            order_id=order.order_id,
            customer_id=order.customer_id,
            home_region=order.home_region,
            currency=order.currency,
            lines=order.lines,
            total=order.total,
        )


class CancelRequest(BaseModel):
    requested_by: str | None = None


class CancelResult(BaseModel):
    accepted: bool
    stage: Stage
    message: str


class RetryCompensationRequest(BaseModel):
    requested_by: str | None = None


class ResolveRequest(BaseModel):
    resolved_by: str = Field(min_length=1, max_length=100)
    note: str = Field(min_length=1, max_length=1000)


class OperatorResult(BaseModel):
    status: SagaStatus
    stage: Stage
    message: str


FLOOR_WORKFLOW = "Floor"


class FloorInput(BaseModel):
    """A saga's shape for `geosaga bench`'s floor: each stage's task queues run in parallel."""

    stages: list[list[str]]


def local_order_shape(home_queue: str) -> FloorInput:
    """A local order's saga: stock check alongside the authorisation, reserve, capture,
    commit, record the outcome — six activities in five stages, all in the home region."""
    return FloorInput(
        stages=[[home_queue, home_queue], [home_queue], [home_queue], [home_queue], [home_queue]]
    )
