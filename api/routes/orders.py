from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Response, status

from api import sagas
from api.schemas import (
    ID_PATTERN,
    CancelAccepted,
    ErrorBody,
    OrderAccepted,
    OrderRequest,
    OrderSummary,
    OrderView,
)
from api.services import ServicesDep
from workflows.contract import SagaStatus

router = APIRouter(prefix="/orders", tags=["orders"])

OrderId = Annotated[str, Path(pattern=ID_PATTERN, description="The order's Idempotency-Key")]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=ID_PATTERN,
        description="Names the order: the same key never starts a second saga",
    ),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    responses={**_ERRORS, 413: {"model": ErrorBody}},
)
async def submit_order(
    order: OrderRequest, idempotency_key: IdempotencyKey, services: ServicesDep, response: Response
) -> OrderAccepted:
    """Starts the order's saga; the same key with the same body returns the same order."""
    sagas.validate(services.settings, order)
    try:
        saga_status, started = await sagas.submit(
            services.client, services.settings, idempotency_key, order
        )
    except sagas.IdempotencyConflict as conflict:
        raise HTTPException(409, str(conflict)) from None
    if not started:
        response.headers["Idempotent-Replayed"] = "true"
    return OrderAccepted(
        order_id=idempotency_key,
        status=saga_status,
        links=sagas.links(services.settings, idempotency_key),
    )


@router.get("", response_model=list[OrderSummary], responses={503: {"model": ErrorBody}})
async def list_orders(
    services: ServicesDep,
    saga_status: Annotated[SagaStatus | None, Query(alias="status")] = None,
    region: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    customer: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderSummary]:
    """Orders from Temporal visibility, newest first, filtered by status, region or customer."""
    return await sagas.search(
        services.client,
        services.settings,
        status=saga_status,
        region=region,
        customer=customer,
        limit=limit,
    )


@router.get("/{order_id}", response_model=OrderView, responses=_ERRORS)
async def get_order(order_id: OrderId, services: ServicesDep) -> OrderView:
    """The saga's status, allocations, steps and compensations."""
    try:
        return await sagas.read(services.client, services.settings, order_id)
    except sagas.OrderNotFound:
        raise HTTPException(404, f"no order {order_id!r}") from None


@router.post(
    "/{order_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAccepted,
    responses=_ERRORS,
)
async def cancel_order(order_id: OrderId, services: ServicesDep) -> CancelAccepted:
    """Accepted before payment capture (the saga compensates); 409 once captured."""
    try:
        message = await sagas.cancel(services.client, order_id, requested_by="api")
    except sagas.OrderNotFound:
        raise HTTPException(404, f"no order {order_id!r}") from None
    except sagas.CancelRefused as refused:
        raise HTTPException(409, str(refused)) from None
    return CancelAccepted(
        order_id=order_id,
        accepted=True,
        message=message,
        links=sagas.links(services.settings, order_id),
    )
