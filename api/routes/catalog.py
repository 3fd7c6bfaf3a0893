from __future__ import annotations

from fastapi import APIRouter

from api.schemas import Product
from api.services import ServicesDep
from regions.catalog import PRODUCTS

router = APIRouter(tags=["catalog"])


@router.get("/catalog", response_model=list[Product])
async def catalog(services: ServicesDep) -> list[Product]:
    """The products every region sells, with prices in the service's currency."""
    currency = services.settings.currency
    return [
        Product(sku=p.sku, name=p.name, unit_price=p.unit_price, currency=currency)
        for p in PRODUCTS
    ]
