from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from api.accepted import accepted
from api.deps import IdempotencyKey
from api.errors import BAD_INPUT, JSON_BODY, TEMPORAL_ERRORS, require_json
from api.schemas import ActionAccepted, ErrorBody, RerunAccepted, ResolutionIn
from api.services import Services, ServicesDep
from orders import operations, sagas
from orders.schemas import ID_PATTERN, OrderAccepted, OrderRequest, OrderSummary, OrderView
from regions.values import SagaStatus

router = APIRouter(prefix="/orders", tags=["orders"], responses=BAD_INPUT)

OrderId = Annotated[str, Path(pattern=ID_PATTERN, description="The order's Idempotency-Key")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    **TEMPORAL_ERRORS,
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    responses={**_ERRORS, **JSON_BODY},
    dependencies=[Depends(require_json)],
)
async def submit_order(
    order: OrderRequest, idempotency_key: IdempotencyKey, services: ServicesDep, response: Response
) -> OrderAccepted:
    """Starts the order's saga; the same key with the same body returns the same order."""
    sagas.validate(services.settings, order)
    saga_status, started = await sagas.submit(
        services.client, services.settings, services.stores, idempotency_key, order
    )
    return accepted(response, services, idempotency_key, saga_status, started=started)


@router.get("", response_model=list[OrderSummary], responses=TEMPORAL_ERRORS)
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
    return await sagas.read(services.client, services.settings, order_id)


@router.post(
    "/{order_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
    responses=_ERRORS,
)
async def cancel_order(order_id: OrderId, services: ServicesDep) -> ActionAccepted:
    """Accepted before payment capture (the saga compensates); 409 once captured."""
    return await _act(services, order_id, operations.cancel(services.client, order_id, "api"))


@router.post(
    "/{order_id}/compensations/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
    responses=_ERRORS,
)
async def retry_compensations(order_id: OrderId, services: ServicesDep) -> ActionAccepted:
    """Retries a needs-attention saga's stuck compensations now; 409 if none is stuck."""
    action = operations.retry_compensation(services.client, order_id, "api")
    return await _act(services, order_id, action)


@router.post(
    "/{order_id}/resolve",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
    responses={**_ERRORS, **JSON_BODY},
    dependencies=[Depends(require_json)],
)
async def resolve(
    order_id: OrderId, resolution: ResolutionIn, services: ServicesDep
) -> ActionAccepted:
    """Records that stuck compensations were done by hand; the saga finishes compensating."""
    action = operations.resolve(services.client, order_id, resolution.resolved_by, resolution.note)
    return await _act(services, order_id, action)


@router.post(
    "/{order_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RerunAccepted,
    responses=_ERRORS,
)
async def rerun(order_id: OrderId, services: ServicesDep) -> RerunAccepted:
    """Runs a failed or terminated saga again: reset to its last good point, or a fresh run."""
    done = await operations.rerun(
        services.client, services.settings, order_id, reason="rerun requested through the API"
    )
    return RerunAccepted(
        order_id=order_id,
        action=done.action,
        run_id=done.run_id,
        links=sagas.links(services.settings, order_id),
    )


async def _act(services: Services, order_id: str, action: Awaitable[str]) -> ActionAccepted:
    return ActionAccepted(
        order_id=order_id,
        accepted=True,
        message=await action,
        links=sagas.links(services.settings, order_id),
    )
