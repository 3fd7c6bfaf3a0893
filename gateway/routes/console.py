from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from gateway import operations
from gateway.routes.authorisations import NOT_FOUND
from gateway.schemas import AuthorisationView, ErrorBody
from gateway.state import StoreDep

router = APIRouter(prefix="/console", tags=["console"])


@router.post(
    "/authorisations/{authorisation_id}/release",
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "It is captured"}},
)
async def release(authorisation_id: str, store: StoreDep) -> AuthorisationView:
    """What a person does in the processor's console: void a hold whatever its card, and
    whatever faults are on. No Idempotency-Key: releasing twice changes nothing."""

    def released() -> AuthorisationView:
        with store.transaction() as session:
            return operations.release(session, authorisation_id)

    return await run_in_threadpool(released)
