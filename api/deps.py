"""The request checks routes share, as dependencies: a route names what it takes (`StoreDep`,
`CartStoreDep`, `CartSku`, `StockSku`) and gets it checked the same way wherever it is named."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path
from fastapi.exceptions import RequestValidationError

from api.services import ServicesDep
from orders.errors import invalid
from orders.schemas import ID_PATTERN
from regions.catalog import unknown_sku
from regions.store import Store

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=ID_PATTERN,
        description="Names the order: the same key never starts a second saga",
    ),
]
RegionHeader = Annotated[
    str | None,
    Header(
        alias="X-Region",
        min_length=1,
        description="The region that serves the request (default: the API's)",
    ),
]


async def _region_store(region: str, services: ServicesDep) -> Store:
    """The store of the path's `{region}`; 404 for a region the API does not serve."""
    store = services.stores.get(region)
    if store is None:
        known = ", ".join(services.settings.regions)
        raise HTTPException(404, f"unknown region {region!r}; known regions: {known}")
    return store


async def _header_store(services: ServicesDep, region: RegionHeader = None) -> Store:
    """The store of the region `X-Region` names (default: the API's); 422 for an unknown one."""
    store = services.stores.get(region or services.settings.default_region)
    if store is None:
        known = ", ".join(services.settings.regions)
        raise RequestValidationError(
            [invalid(("header", "X-Region"), f"unknown region; known: {known}")]
        )
    return store


def _known(sku: str) -> str:
    if refused := unknown_sku(sku):
        raise HTTPException(404, refused)
    return sku


StoreDep = Annotated[Store, Depends(_region_store)]


# The cart and the stock routes document their `{sku}` differently (OpenAPI), so each declares
# its own; the check is one.
async def _cart_sku(sku: Annotated[str, Path(min_length=1, max_length=64)]) -> str:
    return _known(sku)


async def _stock_sku(sku: str, _: StoreDep) -> str:
    """After the region's store: of an unknown region and SKU, the region is named."""
    return _known(sku)


CartStoreDep = Annotated[Store, Depends(_header_store)]
CartSku = Annotated[str, Depends(_cart_sku)]
StockSku = Annotated[str, Depends(_stock_sku)]
