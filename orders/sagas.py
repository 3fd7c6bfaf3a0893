"""The order API's side of Temporal: start, read, cancel and list order sagas."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from foundation.settings import Settings
from orders.errors import EmptyCart, IdempotencyConflict, InvalidRequest, OrderNotFound, invalid
from orders.schemas import Links, OrderLineIn, OrderRequest, OrderSummary, OrderView
from regions import carts, order_requests
from regions.catalog import PRODUCTS_BY_SKU, unknown_sku
from regions.store import Store
from regions.values import Reason, SagaStatus
from workflows.contract import (
    CUSTOMER_ID,
    HOME_REGION,
    ORDER_ID,
    SAGA_REASON,
    SAGA_REGIONS,
    SAGA_STATUS,
    WORKFLOW_ID_PREFIX,
    WORKFLOW_NAME,
    CartCheckout,
    OrderInput,
    OrderLine,
    SagaOptions,
    SagaState,
    workflow_id,
)
from workflows.order_saga import OrderSaga
from workflows.trace import saga_summary

_QUERY_TIMEOUT = timedelta(seconds=5)


def links(settings: Settings, order_id: str) -> Links:
    return Links(
        self=f"{settings.api_url.rstrip('/')}/orders/{order_id}",
        ui=settings.ui_workflow_url(workflow_id(order_id)),
    )


def validate(settings: Settings, request: OrderRequest) -> None:
    """Checks the parts of an order that depend on the catalog and settings."""
    errors = []
    if request.home_region not in settings.regions:
        known = ", ".join(settings.regions)
        errors.append(invalid(("body", "home_region"), f"unknown region; known: {known}"))
    if len(request.lines) > settings.max_lines:
        errors.append(invalid(("body", "lines"), f"at most {settings.max_lines} lines"))
    seen: set[str] = set()
    for index, line in enumerate(request.lines):
        where = ("body", "lines", index)
        if refused := unknown_sku(line.sku):
            errors.append(invalid((*where, "sku"), refused))
        elif line.sku in seen:
            errors.append(invalid((*where, "sku"), f"{line.sku} appears twice; use one line"))
        seen.add(line.sku)
        if line.quantity > settings.max_quantity:
            errors.append(
                invalid((*where, "quantity"), f"at most {settings.max_quantity} units per line")
            )
    if errors:
        raise InvalidRequest(errors)


def order_input(settings: Settings, order_id: str, request: OrderRequest) -> OrderInput:
    return OrderInput(
        order_id=order_id,
        customer_id=request.customer_id,
        home_region=request.home_region,
        currency=settings.currency,
        lines=[
            OrderLine(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=PRODUCTS_BY_SKU[line.sku].unit_price,
            )
            for line in request.lines
        ],
        payment_token=request.payment_token,
        regions=settings.region_queues(),
        options=SagaOptions.from_settings(settings),
    )


def search_attributes(order: OrderInput) -> TypedSearchAttributes:
    """What a saga starts with; the saga keeps status, reason and regions current."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(ORDER_ID, order.order_id),
            SearchAttributePair(CUSTOMER_ID, order.customer_id),
            SearchAttributePair(HOME_REGION, order.home_region),
            SearchAttributePair(SAGA_STATUS, SagaStatus.ACCEPTED.value),
        ]
    )


def fingerprint(request: OrderRequest) -> str:
    return _digest(request.model_dump(mode="json"))


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    client: Client,
    settings: Settings,
    stores: Mapping[str, Store],
    order_id: str,
    request: OrderRequest,
    *,
    cart: CartCheckout | None = None,
    digest: str | None = None,
) -> tuple[SagaStatus, bool]:
    """Starts the saga once per key, ever; returns its status and whether this call started it.

    The key is kept in the home region's store before the saga starts and marked once Temporal
    has taken the start, so it still names its first order after Temporal's retention has
    dropped that saga. `digest` identifies the request (default: the order's fingerprint).
    """
    digest = digest or fingerprint(request)
    previous = await _previous(client, stores, order_id, digest)
    if previous is not None:
        return previous, False
    home = stores[request.home_region]
    kept = await run_in_threadpool(order_requests.keep, home, order_id, digest, started=False)
    if kept.request_sha256 != digest:
        raise _conflict(order_id)
    order = order_input(settings, order_id, request).model_copy(update={"cart": cart})
    try:
        await start(client, settings, order, digest)
        saga_status, started = SagaStatus.ACCEPTED, True
    except WorkflowAlreadyStartedError:
        existing = await replayed(client, order_id, digest)
        if existing is None:
            raise  # it existed a moment ago; nothing sensible to answer
        saga_status, started = existing, False
    await run_in_threadpool(order_requests.keep, home, order_id, digest, started=True)
    return saga_status, started


async def _previous(
    client: Client, stores: Mapping[str, Store], order_id: str, digest: str
) -> SagaStatus | None:
    """The status of the order this key already started, if it did; 409 for another request."""
    found = await run_in_threadpool(order_requests.find, stores.values(), order_id)
    if found is None:
        return None
    store, kept = found
    if kept.request_sha256 != digest:
        raise _conflict(order_id)
    if not kept.started:
        return None  # kept, but the start may never have reached Temporal: start it now
    existing = await replayed(client, order_id, digest)
    if existing is not None:
        return existing
    # Temporal's retention has dropped the saga: the order ran once, under this key.
    recorded = await run_in_threadpool(order_requests.recorded_status, store, order_id)
    return SagaStatus(recorded) if recorded in set(SagaStatus) else SagaStatus.ACCEPTED


def _conflict(order_id: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"Idempotency-Key {order_id!r} was already used for a different order"
    )


async def start(client: Client, settings: Settings, order: OrderInput, digest: str) -> None:
    """The saga's start, as `POST /orders` makes it (`geosaga bench` times it bare too)."""
    await client.start_workflow(
        OrderSaga.run,
        order,
        id=workflow_id(order.order_id),
        task_queue=settings.workflow_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        search_attributes=search_attributes(order),
        memo={"request_sha256": digest},
        static_summary=saga_summary(order),
    )


async def replayed(client: Client, order_id: str, digest: str) -> SagaStatus | None:
    """The status of the order this key already started, if any; 409 for another request."""
    try:
        description = await client.get_workflow_handle(workflow_id(order_id)).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    memo = await description.memo()
    if memo.get("request_sha256") != digest:
        raise _conflict(order_id)
    return status_of(description)


async def checkout(
    client: Client,
    settings: Settings,
    stores: Mapping[str, Store],
    region: str,
    customer_id: str,
    order_id: str,
    payment_token: str,
) -> tuple[SagaStatus, bool]:
    """Starts the saga from the cart as `region` merges it; that region is home."""
    store = stores[region]
    digest = _digest({"checkout": customer_id, "region": region, "token": payment_token})
    existing = await _previous(client, stores, order_id, digest)
    if existing is None:
        existing = await replayed(client, order_id, digest)
    if existing is not None:
        return existing, False
    window_ms = int(settings.cart_removal_window_seconds * 1000)
    cart = await run_in_threadpool(carts.read, store, customer_id, window_ms)
    if not cart.items:
        raise EmptyCart(f"the cart of {customer_id!r} in {store.region} is empty")
    request = OrderRequest(
        customer_id=customer_id,
        home_region=store.region,
        lines=[OrderLineIn(sku=sku, quantity=quantity) for sku, quantity in cart.items.items()],
        payment_token=payment_token,
    )
    validate(settings, request)
    snapshot = CartCheckout(customer_id=customer_id, region=store.region, versions=cart.versions)
    return await submit(client, settings, stores, order_id, request, cart=snapshot, digest=digest)


async def read(client: Client, settings: Settings, order_id: str) -> OrderView:
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    description = await describe(handle)
    state = await _state(handle, description)
    if state is None:
        state = SagaState.begin(await order_input_of(client, handle))
    status = state.status
    if description.status not in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.COMPLETED,
    ):
        # Failed, terminated or timed out: the saga did not finish its own bookkeeping.
        status = SagaStatus.NEEDS_ATTENTION
    return OrderView(
        **state.model_dump(exclude={"status"}),
        status=status,
        workflow_status=_status_name(description.status),
        links=links(settings, order_id),
    )


async def search(
    client: Client,
    settings: Settings,
    *,
    status: SagaStatus | None,
    region: str | None,
    customer: str | None,
    limit: int,
) -> list[OrderSummary]:
    clauses = [f"WorkflowType = {_quoted(WORKFLOW_NAME)}"]
    if status is not None:
        clauses.append(f"{SAGA_STATUS.name} = {_quoted(status.value)}")
    if region is not None:
        clauses.append(
            f"({HOME_REGION.name} = {_quoted(region)} OR {SAGA_REGIONS.name} = {_quoted(region)})"
        )
    if customer is not None:
        clauses.append(f"{CUSTOMER_ID.name} = {_quoted(customer)}")
    found = []
    async for execution in client.list_workflows(" AND ".join(clauses), limit=limit):
        attributes = execution.typed_search_attributes
        order_id = attributes.get(ORDER_ID) or execution.id.removeprefix(WORKFLOW_ID_PREFIX)
        saga_status = attributes.get(SAGA_STATUS)
        reason = attributes.get(SAGA_REASON)
        found.append(
            OrderSummary(
                order_id=order_id,
                status=SagaStatus(saga_status) if saga_status else None,
                reason=Reason(reason) if reason else None,
                customer_id=attributes.get(CUSTOMER_ID),
                home_region=attributes.get(HOME_REGION),
                regions=list(attributes.get(SAGA_REGIONS) or []),
                workflow_status=_status_name(execution.status),
                started_at=execution.start_time,
                closed_at=execution.close_time,
                links=links(settings, order_id),
            )
        )
    return found


async def describe(handle: WorkflowHandle[OrderSaga, SagaState]) -> WorkflowExecutionDescription:
    try:
        return await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise OrderNotFound(handle.id.removeprefix(WORKFLOW_ID_PREFIX)) from None
        raise


async def _state(
    handle: WorkflowHandle[OrderSaga, SagaState], description: WorkflowExecutionDescription
) -> SagaState | None:
    """The saga's own state: its result once completed, a query while it runs."""
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    try:
        return await handle.query(OrderSaga.state, rpc_timeout=_QUERY_TIMEOUT)
    except (WorkflowQueryFailedError, RPCError):
        # No worker has picked the saga up yet (or none can replay it): fall back to its input.
        return None


async def order_input_of(
    client: Client, handle: WorkflowHandle[OrderSaga, SagaState]
) -> OrderInput:
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [order] = await client.data_converter.decode(payloads, [OrderInput])
        if isinstance(order, OrderInput):
            return order
        break
    raise OrderNotFound(handle.id.removeprefix(WORKFLOW_ID_PREFIX))


def status_of(description: WorkflowExecutionDescription) -> SagaStatus:
    value = description.typed_search_attributes.get(SAGA_STATUS)
    return SagaStatus(value) if value else SagaStatus.ACCEPTED


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status else "unknown"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
