from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, Response

from gateway import operations
from gateway.routes.authorisations import WRITE_ERRORS
from gateway.schemas import CancelRequest, CancelView
from gateway.state import IdempotencyKey, StateDep
from gateway.writes import write

router = APIRouter(tags=["cancels"])


@router.post("/cancels", response_model=CancelView, responses=WRITE_ERRORS)
async def cancel(
    body: CancelRequest, key: IdempotencyKey, request: Request, state: StateDep
) -> Response:
    """A technical cancel: void whatever is held under the reference, and whatever arrives
    under it later."""
    operation = partial(operations.cancel, reference_text=body.reference, key=key)
    return await write(request, state, key, body.model_dump(mode="json"), operation)
