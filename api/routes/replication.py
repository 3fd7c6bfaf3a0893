from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import StoreDep
from api.errors import BAD_INPUT
from api.schemas import ErrorBody
from api.services import ServicesDep
from regions import lag, replication
from regions.unavailable import StoreUnavailable

router = APIRouter(prefix="/regions", tags=["replication"], responses=BAD_INPUT)


class SourceStatus(BaseModel):
    source: str
    delivered_through: int
    lag_events: int
    lag_seconds: float
    applied: int
    duplicates: int
    held_back: int
    conflicts_detected: int
    conflicts_resolved: int
    dead_lettered: int
    undelivered_events: int
    held_events: int
    failing_events: int


class ReplicationStatus(BaseModel):
    region: str
    sources: list[SourceStatus]
    dead_letters: int


class DeadLetterOut(BaseModel):
    event_id: str
    source_region: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    attempts: int
    error: str
    dead_at: datetime


class Redriven(BaseModel):
    event_id: str
    applied: bool


@router.get(
    "/{region}/replication",
    response_model=ReplicationStatus,
    responses={404: {"model": ErrorBody}},
)
async def replication_status(store: StoreDep, services: ServicesDep) -> ReplicationStatus:
    """What this region has applied of every region's events, and how far behind it is."""
    pairs = await run_in_threadpool(lag.status, services.stores, store.region)
    depth = await run_in_threadpool(lag.dead_letter_depth, store)
    return ReplicationStatus(
        region=store.region,
        sources=[SourceStatus.model_validate(pair, from_attributes=True) for pair in pairs],
        dead_letters=depth,
    )


@router.get(
    "/{region}/dead-letters",
    response_model=list[DeadLetterOut],
    responses={404: {"model": ErrorBody}},
)
async def dead_letters(store: StoreDep) -> list[DeadLetterOut]:
    """Events this region could not apply after every attempt."""
    letters = await run_in_threadpool(replication.dead_letters, store)
    return [DeadLetterOut.model_validate(letter, from_attributes=True) for letter in letters]


@router.post(
    "/{region}/dead-letters/{event_id}/redrive",
    response_model=Redriven,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def redrive(event_id: str, store: StoreDep) -> Redriven:
    """Applies a dead-lettered event again, once its cause is fixed; 409 if it still fails."""
    try:
        found = await run_in_threadpool(replication.redrive, store, event_id)
    except StoreUnavailable:
        raise  # the store's trouble, not the event's: a 503
    except Exception as failure:
        raise HTTPException(409, f"still cannot apply it: {failure}") from None
    if not found:
        raise HTTPException(404, f"no dead letter {event_id!r} in {store.region}")
    return Redriven(event_id=event_id, applied=True)
