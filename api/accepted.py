"""The 202 of a request that started (or found) an order's saga, for every route that starts one."""

from __future__ import annotations

from fastapi import Response

from api.services import Services
from orders import sagas
from orders.schemas import OrderAccepted
from regions.values import SagaStatus


def accepted(
    response: Response, services: Services, order_id: str, saga_status: SagaStatus, *, started: bool
) -> OrderAccepted:
    """The 202 for an order's saga; a repeated key is marked so clients can tell."""
    if not started:
        response.headers["Idempotent-Replayed"] = "true"
    return OrderAccepted(
        order_id=order_id, status=saga_status, links=sagas.links(services.settings, order_id)
    )
