"""Stock in one region: reads, operator adjustments and row locks for reservations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from regions import views
from regions.catalog import PRODUCTS
from regions.events import StockLevelChanged
from regions.models import Stock, StockView, utcnow
from regions.store import Store
from regions.unavailable import retried_if_disconnected


@dataclass(frozen=True)
class StockLevel:
    sku: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockBelowReserved(ValueError):
    """Physical stock cannot be set below what running sagas already hold."""


@retried_if_disconnected
def list_stock(store: Store) -> list[StockLevel]:
    """Every catalog SKU, with zeros for those this region has never stocked."""
    with store.reading() as session:
        rows = {row.sku: row for row in session.exec(select(Stock))}
    return [
        StockLevel(product.sku, rows[product.sku].on_hand, rows[product.sku].reserved)
        if product.sku in rows
        else StockLevel(product.sku, 0, 0)
        for product in PRODUCTS
    ]


def available(session: Session, skus: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(skus))
    rows = {row.sku: row for row in session.exec(select(Stock).where(col(Stock.sku).in_(wanted)))}
    return {sku: rows[sku].available if sku in rows else 0 for sku in wanted}


def replicated_available(
    session: Session, skus: Iterable[str], except_region: str
) -> dict[str, dict[str, int]]:
    """What the stock view says other regions have of these SKUs (regions it knows only)."""
    wanted = sorted(set(skus))
    rows = session.exec(
        select(StockView).where(col(StockView.sku).in_(wanted), StockView.region != except_region)
    )
    known: dict[str, dict[str, int]] = {}
    for row in rows:
        known.setdefault(row.region, {})[row.sku] = row.on_hand - row.reserved
    return known


def lock_stock(session: Session, skus: Iterable[str]) -> dict[str, Stock]:
    """Locks the rows (PostgreSQL: FOR UPDATE, in SKU order so lockers never deadlock)."""
    wanted = sorted(set(skus))
    statement = (
        select(Stock).where(col(Stock.sku).in_(wanted)).order_by(col(Stock.sku)).with_for_update()
    )
    return {row.sku: row for row in session.exec(statement)}


# Run twice, the second sets the same level again.
@retried_if_disconnected
def set_on_hand(store: Store, sku: str, on_hand: int) -> StockLevel:
    with store.transaction() as session:
        row = lock_stock(session, [sku]).get(sku)
        if row is None:
            row = Stock(sku=sku, on_hand=0, reserved=0)
        if on_hand < row.reserved:
            raise StockBelowReserved(
                f"on_hand {on_hand} is below the {row.reserved} units reserved by running orders"
            )
        previous = row.on_hand
        row.on_hand = on_hand
        row.updated_at = utcnow()
        session.add(row)
        publish_levels(session, store.region, [row], f"adjusted from {previous}")
        return StockLevel(row.sku, row.on_hand, row.reserved)


def publish_levels(
    session: Session,
    region: str,
    rows: Iterable[Stock],
    cause: str,
    order_id: str | None = None,
) -> None:
    """Tells the other regions a SKU's levels after a change (their stock views)."""
    for row in rows:
        event = StockLevelChanged(
            region=region,
            sku=row.sku,
            on_hand=row.on_hand,
            reserved=row.reserved,
            cause=cause,
            order_id=order_id,
        )
        views.publish(session, region, event, row.sku)
