from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from api.deps import StockSku, StoreDep
from api.errors import BAD_INPUT, JSON_BODY, STORE_ERRORS, require_json
from api.schemas import ErrorBody, RegionOut, StockOut, StockUpdate
from api.services import ServicesDep
from regions import inventory
from regions.inventory import StockLevel

router = APIRouter(prefix="/regions", tags=["regions"])


@router.get("", response_model=list[RegionOut])
async def list_regions(services: ServicesDep) -> list[RegionOut]:
    """The regions and the task queue each one's worker polls."""
    settings = services.settings
    return [RegionOut(name=name, task_queue=settings.task_queue(name)) for name in settings.regions]


@router.get(
    "/{region}/stock",
    response_model=list[StockOut],
    responses={404: {"model": ErrorBody}, **BAD_INPUT, **STORE_ERRORS},
)
async def region_stock(store: StoreDep) -> list[StockOut]:
    """Stock of every catalog SKU in one region."""
    levels = await run_in_threadpool(inventory.list_stock, store)
    return [_out(level) for level in levels]


@router.put(
    "/{region}/stock/{sku}",
    response_model=StockOut,
    responses={
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        **BAD_INPUT,
        **JSON_BODY,
        **STORE_ERRORS,
    },
    dependencies=[Depends(require_json)],
)
async def set_stock(sku: StockSku, update: StockUpdate, store: StoreDep) -> StockOut:
    """Sets physical stock (an operator call); it may not fall below what is reserved."""
    try:
        level = await run_in_threadpool(inventory.set_on_hand, store, sku, update.on_hand)
    except inventory.StockBelowReserved as refused:
        raise HTTPException(409, str(refused)) from None
    return _out(level)


def _out(level: StockLevel) -> StockOut:
    return StockOut(
        sku=level.sku, on_hand=level.on_hand, reserved=level.reserved, available=level.available
    )
