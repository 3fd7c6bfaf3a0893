"""Demo stock for the local stack: some SKUs live in one region only, so splits happen."""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import select

from regions.inventory import set_on_hand
from regions.models import Stock
from regions.store import Store

DEMO_STOCK: dict[str, dict[str, int]] = {
    "us-east": {"SKU-1": 40, "SKU-2": 20, "SKU-3": 10, "SKU-4": 5, "SKU-5": 200, "SKU-7": 30},
    "eu-west": {"SKU-1": 25, "SKU-2": 5, "SKU-3": 8, "SKU-5": 150, "SKU-6": 12},
    "ap-south": {"SKU-1": 30, "SKU-5": 100, "SKU-6": 6, "SKU-8": 3},
}


def seed_demo_stock(stores: Mapping[str, Store]) -> list[str]:
    """Stocks every known region whose store has no stock yet; returns the regions seeded."""
    seeded = []
    for region, store in stores.items():
        levels = DEMO_STOCK.get(region)
        if not levels:
            continue
        with store.reading() as session:
            if session.exec(select(Stock).limit(1)).first() is not None:
                continue
        for sku, on_hand in levels.items():
            set_on_hand(store, sku, on_hand)
        seeded.append(region)
    return seeded
