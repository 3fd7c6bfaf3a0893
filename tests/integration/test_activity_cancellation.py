"""A cancelled step never leaves its region's store locked: the SDK raises nothing inside its
thread (`no_thread_cancel_exception`), so the transaction ends as it would have."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.contract import ReserveStock, StepOutcome
from activities.gateway_client import HttpGateway
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.replication import ReplicationActivities
from activities.stock import StockActivities
from regions.store import Store
from regions.values import StockLine
from tests.gateway_server import TEST_GATEWAY_KEY
from tests.helpers import stock

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_a_step_cancelled_while_it_waits_for_the_writer_lock_releases_it(
    stores: dict[str, Store],
) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    settings_store = stores["us-east"]
    store = Store("us-east", settings_store.url, timeout_seconds=5)
    activities = StockActivities(store)
    environment = ActivityEnvironment()
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with store.transaction():
            holding.set()
            release.wait(30)

    def reserve() -> StepOutcome:
        request = ReserveStock(
            key="o-1/reserve/us-east", order_id="o-1", lines=[StockLine(sku="SKU-1", quantity=1)]
        )
        result: StepOutcome = environment.run(activities.reserve_stock, request)
        return result

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(hold_the_lock)
        assert holding.wait(10)
        reserving = pool.submit(reserve)
        time.sleep(0.5)  # the step is queued on the writer lock now
        environment.cancel()  # as when its saga is cancelled or its worker shuts down
        release.set()
        held.result(10)
        outcome = reserving.result(10)

    # The cancelled step finished its transaction; the lock is free for the next writer.
    assert outcome.status == "held"
    with store.transaction():
        pass
    store.dispose()


def test_no_region_activity_can_be_interrupted_inside_its_thread(
    stores: dict[str, Store],
) -> None:
    store = stores["eu-west"]
    gateway = HttpGateway("http://127.0.0.1:9", TEST_GATEWAY_KEY, timeout_seconds=1)
    steps = [
        *StockActivities(store).all(),
        *PaymentActivities(store, gateway).all(),
        *OrderActivities(store).all(),
        *ReplicationActivities(store, max_attempts=3).all(),
    ]

    interruptible = [
        step.__name__
        for step in steps
        if not activity._Definition.must_from_callable(step).no_thread_cancel_exception
    ]

    assert steps
    assert interruptible == []
    gateway.close()
