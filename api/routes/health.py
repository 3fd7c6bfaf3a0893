from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.errors import TEMPORAL_ERRORS
from api.schemas import Health
from api.services import ServicesDep
from foundation.temporal import temporal_unreachable

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=TEMPORAL_ERRORS)
async def healthz(services: ServicesDep) -> Health | JSONResponse:
    """200 when the API can reach Temporal, 503 with the reason otherwise."""
    settings = services.settings
    try:
        await services.client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=3)
        )
    except Exception as error:
        if not temporal_unreachable(error):
            raise
        return JSONResponse(
            status_code=503,
            content={"detail": f"Temporal at {settings.temporal_address} is unreachable: {error}"},
        )
    return Health(
        status="ok", temporal=settings.temporal_address, namespace=settings.temporal_namespace
    )
