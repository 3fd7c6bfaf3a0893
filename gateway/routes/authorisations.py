from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import select

from gateway import operations
from gateway.models import Authorisation
from gateway.money import to_minor
from gateway.schemas import (
    AuthorisationList,
    AuthorisationRequest,
    AuthorisationView,
    CaptureRequest,
    ErrorBody,
)
from gateway.state import IdempotencyKey, StateDep, StoreDep
from gateway.writes import write

router = APIRouter(prefix="/authorisations", tags=["authorisations"])

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Not in a state for this, or the key was reused"},
    502: {"model": ErrorBody, "description": "Injected fault: written, the reply lost"},
    503: {"model": ErrorBody, "description": "Transient: nothing written; retry with the key"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


@router.post("", status_code=201, response_model=AuthorisationView, responses=WRITE_ERRORS)
async def authorise(
    body: AuthorisationRequest, key: IdempotencyKey, request: Request, state: StateDep
) -> Response:
    """Put a hold on the card: authorised or declined by token, voided if the reference was
    cancelled first."""
    asked = {**body.model_dump(mode="json"), "amount": to_minor(body.amount)}
    return await write(
        request, state, key, asked, partial(operations.authorise, body=body, key=key)
    )


@router.post(
    "/{authorisation_id}/capture",
    response_model=AuthorisationView,
    responses={**WRITE_ERRORS, **NOT_FOUND},
)
async def capture(
    authorisation_id: str,
    body: CaptureRequest,
    key: IdempotencyKey,
    request: Request,
    state: StateDep,
) -> Response:
    """Take the money: once per authorisation, at most what is held."""
    minor = to_minor(body.amount)
    operation = partial(
        operations.capture, authorisation_id=authorisation_id, amount_minor=minor, key=key
    )
    return await write(request, state, key, {"amount": minor}, operation)


@router.post(
    "/{authorisation_id}/void",
    response_model=AuthorisationView,
    responses={**WRITE_ERRORS, **NOT_FOUND},
)
async def void(
    authorisation_id: str, key: IdempotencyKey, request: Request, state: StateDep
) -> Response:
    """Release the hold (a voided or declined one stays as it is)."""
    operation = partial(operations.void, authorisation_id=authorisation_id, key=key)
    return await write(request, state, key, {}, operation)


@router.get("/{authorisation_id}", responses=NOT_FOUND)
def one(authorisation_id: str, store: StoreDep) -> AuthorisationView:
    """One authorisation."""
    with store.reading() as session:
        row = session.get(Authorisation, authorisation_id)
    if row is None:
        raise HTTPException(404, f"no authorisation {authorisation_id}")
    return AuthorisationView.of(row)


@router.get("")
def under_reference(
    reference: Annotated[str, Query(min_length=1, max_length=200)], store: StoreDep
) -> AuthorisationList:
    """The authorisations under a merchant reference (at most one)."""
    with store.reading() as session:
        rows = session.exec(select(Authorisation).where(Authorisation.reference == reference))
        views = [AuthorisationView.of(row) for row in rows]
    return AuthorisationList(authorisations=views)
