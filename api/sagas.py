"""The order API's side of Temporal: start, read, cancel and list order sagas."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

from fastapi.exceptions import RequestValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import invalid
from api.schemas import Links, OrderRequest, OrderSummary, OrderView
from geosaga.settings import Settings
from regions.catalog import PRODUCTS_BY_SKU
from workflows.contract import (
    CUSTOMER_ID,
    HOME_REGION,
    ORDER_ID,
    SAGA_REASON,
    SAGA_REGIONS,
    SAGA_STATUS,
    WORKFLOW_ID_PREFIX,
    WORKFLOW_NAME,
    CancelRequest,
    CancelResult,
    OrderInput,
    OrderLine,
    Reason,
    SagaOptions,
    SagaState,
    SagaStatus,
    workflow_id,
)
from workflows.order_saga import OrderSaga

_QUERY_TIMEOUT = timedelta(seconds=5)
_UPDATE_TIMEOUT = timedelta(seconds=10)
_UPDATE_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


class OrderNotFound(Exception):
    pass


class IdempotencyConflict(Exception):
    """The key was used before with a different body."""


class CancelRefused(Exception):
    pass


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
        if line.sku not in PRODUCTS_BY_SKU:
            errors.append(invalid((*where, "sku"), f"unknown SKU {line.sku!r}"))
        elif line.sku in seen:
            errors.append(invalid((*where, "sku"), f"{line.sku} appears twice; use one line"))
        seen.add(line.sku)
        if line.quantity > settings.max_quantity:
            errors.append(
                invalid((*where, "quantity"), f"at most {settings.max_quantity} units per line")
            )
    if errors:
        raise RequestValidationError(errors)


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
        # The saga's timing settings share their names with SagaOptions' fields.
        options=SagaOptions.model_validate(
            settings.model_dump(include=set(SagaOptions.model_fields))
        ),
    )


def fingerprint(request: OrderRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    client: Client, settings: Settings, order_id: str, request: OrderRequest
) -> tuple[SagaStatus, bool]:
    """Starts the saga once per key; returns its status and whether this call started it."""
    order = order_input(settings, order_id, request)
    digest = fingerprint(request)
    try:
        await client.start_workflow(
            OrderSaga.run,
            order,
            id=workflow_id(order_id),
            task_queue=settings.workflow_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_ID, order_id),
                    SearchAttributePair(CUSTOMER_ID, request.customer_id),
                    SearchAttributePair(HOME_REGION, request.home_region),
                    SearchAttributePair(SAGA_STATUS, SagaStatus.ACCEPTED.value),
                ]
            ),
            memo={"request_sha256": digest},
            static_summary=(
                f"order {order_id}: {len(order.lines)} line(s), {order.total} {order.currency},"
                f" home {order.home_region}"
            ),
        )
    except WorkflowAlreadyStartedError:
        description = await client.get_workflow_handle(workflow_id(order_id)).describe()
        memo = await description.memo()
        if memo.get("request_sha256") != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {order_id!r} was already used for a different order"
            ) from None
        return _status_of(description), False
    return SagaStatus.ACCEPTED, True


async def read(client: Client, settings: Settings, order_id: str) -> OrderView:
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    description = await _describe(handle)
    state = await _state(handle, description)
    if state is None:
        state = SagaState.begin(await _input(client, handle))
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


async def cancel(client: Client, order_id: str, requested_by: str | None) -> str:
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    try:
        result = await _update_with_retry(handle, CancelRequest(requested_by=requested_by))
    except WorkflowUpdateFailedError as refused:
        cause = refused.cause
        raise CancelRefused(
            cause.message if isinstance(cause, ApplicationError) else str(cause)
        ) from None
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        description = await _describe(handle)
        status = _status_of(description)
        raise CancelRefused(f"the order has already finished ({status})") from None
    return result.message


async def _update_with_retry(
    handle: WorkflowHandle[OrderSaga, SagaState], request: CancelRequest
) -> CancelResult:
    """Sends the update again when the server aborted it unapplied.

    The server aborts an update whose workflow task failed, even for the benign
    UnhandledCommand failure (new events arrived while the workflow tried to finish); the
    update never reached the workflow, so sending it again is safe.
    """
    retries = iter(_UPDATE_RETRY_DELAYS)
    while True:
        try:
            result: CancelResult = await handle.execute_update(
                OrderSaga.cancel, request, rpc_timeout=_UPDATE_TIMEOUT
            )
            return result
        except RPCError as error:
            delay = next(retries, None)
            if delay is None or not _workflow_not_ready(error):
                raise
        await asyncio.sleep(delay)


def _workflow_not_ready(error: RPCError) -> bool:
    if error.status != RPCStatusCode.FAILED_PRECONDITION or error.grpc_status is None:
        return False
    return any(
        detail.type_url.endswith("WorkflowNotReadyFailure") for detail in error.grpc_status.details
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


async def _describe(handle: WorkflowHandle[OrderSaga, SagaState]) -> WorkflowExecutionDescription:
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


async def _input(client: Client, handle: WorkflowHandle[OrderSaga, SagaState]) -> OrderInput:
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        [order] = await client.data_converter.decode(payloads, [OrderInput])
        if isinstance(order, OrderInput):
            return order
        break
    raise OrderNotFound(handle.id)


def _status_of(description: WorkflowExecutionDescription) -> SagaStatus:
    value = description.typed_search_attributes.get(SAGA_STATUS)
    return SagaStatus(value) if value else SagaStatus.ACCEPTED


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status else "unknown"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
