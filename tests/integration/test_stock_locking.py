"""Concurrent reservations of the last units in one region never oversell (SQLite and
PostgreSQL): `lock_stock` takes the stock rows FOR UPDATE on PostgreSQL, and every SQLite
writer takes the database's write lock when its transaction begins."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contract import ErrorType, ReserveStock, StepOutcome
from activities.stock import StockActivities
from regions.inventory import set_on_hand
from regions.models import Reservation, ReservationLine, Stock
from regions.store import Store
from regions.values import ReservationStatus, StockLine

LAST_UNITS = 5
BUYERS = 12


@pytest.fixture
def store(eu_west_store: Store) -> Store:
    return eu_west_store


def test_concurrent_reservations_of_the_last_units_never_oversell(store: Store) -> None:
    set_on_hand(store, "SKU-8", LAST_UNITS)
    stock = StockActivities(store)
    start = threading.Barrier(BUYERS)

    def reserve(buyer: int) -> StepOutcome | ApplicationError:
        request = ReserveStock(
            key=f"order-race-{buyer}/reserve/eu-west",
            order_id=f"race-{buyer}",
            lines=[StockLine(sku="SKU-8", quantity=1)],
        )
        start.wait()
        try:
            outcome: StepOutcome = ActivityEnvironment().run(stock.reserve_stock, request)
        except ApplicationError as refused:
            return refused
        return outcome

    with ThreadPoolExecutor(BUYERS) as pool:
        results = list(pool.map(reserve, range(BUYERS)))

    held = [r for r in results if isinstance(r, StepOutcome)]
    refused = [r for r in results if isinstance(r, ApplicationError)]
    assert len(held) == LAST_UNITS
    assert all(outcome.status == ReservationStatus.HELD for outcome in held)
    assert len(refused) == BUYERS - LAST_UNITS
    assert {error.type for error in refused} == {ErrorType.OUT_OF_STOCK}
    with store.reading() as session:
        row = session.get(Stock, "SKU-8")
        lines = session.exec(select(ReservationLine)).all()
        statuses = [r.status for r in session.exec(select(Reservation))]
    assert row is not None
    assert (row.on_hand, row.reserved) == (LAST_UNITS, LAST_UNITS)
    assert sum(line.quantity for line in lines) == LAST_UNITS
    assert sorted(statuses).count(ReservationStatus.HELD) == LAST_UNITS
