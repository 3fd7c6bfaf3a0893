"""The product catalog every region knows, and the region catalog built from settings."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from foundation.settings import Settings


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    unit_price: Decimal


# Prices are in the service's one currency (Settings.currency).
PRODUCTS: tuple[Product, ...] = (
    Product("SKU-1", "Travel mug", Decimal("12.50")),
    Product("SKU-2", "Espresso cups, set of 2", Decimal("24.00")),
    Product("SKU-3", "Pour-over kettle", Decimal("49.90")),
    Product("SKU-4", "Burr grinder", Decimal("129.00")),
    Product("SKU-5", "Paper filters, 100", Decimal("4.95")),
    Product("SKU-6", "Cold brew jar", Decimal("31.00")),
    Product("SKU-7", "Tea sampler", Decimal("18.75")),
    Product("SKU-8", "Limited-edition tin", Decimal("65.00")),
)

PRODUCTS_BY_SKU: dict[str, Product] = {product.sku: product for product in PRODUCTS}


def unknown_sku(sku: str) -> str | None:
    """Why `sku` is refused, or None for a SKU the catalog sells."""
    return None if sku in PRODUCTS_BY_SKU else f"unknown SKU {sku!r}"


@dataclass(frozen=True)
class Region:
    name: str
    task_queue: str
    database_url: str


def regions(settings: Settings) -> tuple[Region, ...]:
    return tuple(
        Region(name, settings.task_queue(name), settings.database_url(name))
        for name in settings.regions
    )
