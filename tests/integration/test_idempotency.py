"""A step delivered twice, or racing itself, has exactly one effect; undo before do is safe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TypeVar

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contract import (
    AuthorisationKey,
    AuthorisePayment,
    ReservationKey,
    ReserveStock,
    StepOutcome,
)
from activities.gateway import GatewayUnavailable
from activities.gateway_client import HttpGateway
from activities.payments import PaymentActivities
from activities.stock import StockActivities
from foundation.settings import Settings
from regions.models import Authorisation, OutboxEvent, ProcessedKey, Reservation
from regions.store import Store
from regions.values import AuthorisationStatus, StockLine
from tests.gateway_server import GatewayServer
from tests.helpers import new_key, on_hand, stock

T = TypeVar("T")


def deliver(activity: Callable[..., T], *args: object) -> T:
    """Runs an activity as a worker would: in a thread, with an activity context."""
    return ActivityEnvironment().run(activity, *args)


def reserve(key: str, quantity: int = 2) -> ReserveStock:
    return ReserveStock(key=key, order_id="o-1", lines=[StockLine(sku="SKU-1", quantity=quantity)])


def events(store: Store, event_type: str) -> list[OutboxEvent]:
    with store.reading() as session:
        return list(session.exec(select(OutboxEvent).where(OutboxEvent.event_type == event_type)))


def test_a_redelivered_reservation_reserves_once(stores: dict[str, Store]) -> None:
    store = stores["us-east"]
    stock(stores, {"us-east": {"SKU-1": 10}})
    activities = StockActivities(store)

    first = deliver(activities.reserve_stock, reserve("o-1/reserve/us-east"))
    second = deliver(activities.reserve_stock, reserve("o-1/reserve/us-east"))

    assert (first.status, first.repeated) == ("held", False)
    assert (second.status, second.repeated) == ("held", True)
    assert on_hand(stores)["us-east"]["SKU-1"] == (10, 2)
    assert len(events(store, "StockReserved")) == 1


def test_racing_deliveries_of_one_key_have_one_effect(stores: dict[str, Store]) -> None:
    store = stores["eu-west"]
    stock(stores, {"eu-west": {"SKU-1": 100}})
    activities = StockActivities(store)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda _: deliver(activities.reserve_stock, reserve("o-1/reserve/eu-west", 3)),
                range(8),
            )
        )

    assert {o.status for o in outcomes} == {"held"}
    assert sum(not o.repeated for o in outcomes) == 1
    assert on_hand(stores)["eu-west"]["SKU-1"] == (100, 3)
    assert len(events(store, "StockReserved")) == 1
    with store.reading() as session:
        assert len(session.exec(select(ProcessedKey)).all()) == 1


def test_release_then_commit_twice_each_act_once(stores: dict[str, Store]) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    activities = StockActivities(stores["us-east"])
    deliver(activities.reserve_stock, reserve("a/reserve/us-east"))
    deliver(activities.reserve_stock, reserve("b/reserve/us-east", 3))

    for _ in range(2):
        deliver(activities.release_stock, ReservationKey(key="a/reserve/us-east", order_id="a"))
        deliver(activities.commit_stock, ReservationKey(key="b/reserve/us-east", order_id="b"))

    assert on_hand(stores)["us-east"]["SKU-1"] == (7, 0)
    assert len(events(stores["us-east"], "StockReleased")) == 1
    assert len(events(stores["us-east"], "StockCommitted")) == 1


def test_a_release_that_overtakes_its_reservation_stops_it(stores: dict[str, Store]) -> None:
    stock(stores, {"us-east": {"SKU-1": 10}})
    activities = StockActivities(stores["us-east"])

    released = deliver(
        activities.release_stock, ReservationKey(key="late/reserve/us-east", order_id="late")
    )
    reserved = deliver(activities.reserve_stock, reserve("late/reserve/us-east"))

    assert released.status == "released"
    assert reserved.status == "released"
    assert on_hand(stores)["us-east"]["SKU-1"] == (10, 0)


def test_out_of_stock_is_final_for_its_key(stores: dict[str, Store]) -> None:
    stock(stores, {"us-east": {"SKU-1": 1}})
    activities = StockActivities(stores["us-east"])

    for _ in range(2):
        with pytest.raises(ApplicationError) as refused:
            deliver(activities.reserve_stock, reserve("short/reserve/us-east"))
        assert refused.value.type == "OutOfStock"
        assert refused.value.non_retryable
    with stores["us-east"].reading() as session:
        assert session.get(Reservation, "short/reserve/us-east") is not None
    assert on_hand(stores)["us-east"]["SKU-1"] == (1, 0)


def authorise(key: str, token: str = "tok_ok") -> AuthorisePayment:
    return AuthorisePayment(
        key=key,
        order_id="o-1",
        customer_id="cust-1",
        amount=Decimal("25.00"),
        currency="USD",
        payment_token=token,
    )


@pytest.fixture
def gateway(settings: Settings) -> Iterator[HttpGateway]:
    """The session's gateway process, as the workers reach it."""
    client = HttpGateway.from_settings(settings)
    yield client
    client.close()


def payment_key(name: str) -> str:
    """A step key of this test's own: the session's gateway outlives every test."""
    return f"{name}-{new_key()}/authorise/us-east"


def test_a_redelivered_authorisation_authorises_once(
    stores: dict[str, Store], gateway: HttpGateway, gateway_server: GatewayServer
) -> None:
    store = stores["us-east"]
    activities = PaymentActivities(store, gateway)
    key = payment_key("again")

    outcomes: list[StepOutcome] = [
        deliver(activities.authorise_payment, authorise(key)) for _ in range(3)
    ]

    assert [o.repeated for o in outcomes] == [False, True, True]
    assert len({o.gateway_ref for o in outcomes}) == 1
    with store.reading() as session:
        [authorisation] = session.exec(select(Authorisation)).all()
    assert authorisation.status == AuthorisationStatus.AUTHORISED
    [held] = gateway_server.authorisations(key)
    assert (held["id"], held["status"]) == (outcomes[0].gateway_ref, "authorised")
    assert [e["kind"] for e in gateway_server.ledger(key)] == ["authorised"]


def test_a_void_that_overtakes_its_authorisation_voids_it(
    stores: dict[str, Store], gateway: HttpGateway, gateway_server: GatewayServer
) -> None:
    store = stores["us-east"]
    activities = PaymentActivities(store, gateway)
    key = payment_key("late")

    voided = deliver(activities.void_payment, AuthorisationKey(key=key, order_id="late"))
    authorised = deliver(activities.authorise_payment, authorise(key))

    assert voided.status == "voided"
    assert authorised.status == "voided"
    with store.reading() as session:
        authorisation = session.get(Authorisation, key)
    assert authorisation is not None
    assert authorisation.status == AuthorisationStatus.VOIDED
    [late] = gateway_server.authorisations(key)
    assert late["status"] == "voided"
    assert [e["kind"] for e in gateway_server.ledger(key)] == ["cancelled", "voided"]


def test_void_fail_token_keeps_failing_transiently(
    stores: dict[str, Store], gateway: HttpGateway, gateway_server: GatewayServer
) -> None:
    store = stores["us-east"]
    activities = PaymentActivities(store, gateway)
    key = payment_key("stuck")
    deliver(activities.authorise_payment, authorise(key, token="tok_void_fail"))

    for _ in range(3):
        with pytest.raises(GatewayUnavailable, match="cannot be voided"):
            deliver(activities.void_payment, AuthorisationKey(key=key, order_id="stuck"))

    with store.reading() as session:
        authorisation = session.get(Authorisation, key)
        assert session.get(ProcessedKey, f"void:{key}") is None
    assert authorisation is not None
    assert authorisation.status == AuthorisationStatus.AUTHORISED
    assert [a["status"] for a in gateway_server.authorisations(key)] == ["authorised"]


def test_a_repeated_reservation_says_when_a_release_gave_its_units_back(
    stores: dict[str, Store],
) -> None:
    """A saga rerun from before its compensation asks again: it learns the units are gone."""
    stock(stores, {"us-east": {"SKU-1": 10}})
    activities = StockActivities(stores["us-east"])
    key = "o-rerun/reserve/us-east"

    taken = deliver(activities.reserve_stock, reserve(key))
    deliver(activities.release_stock, ReservationKey(key=key, order_id="o-1"))
    again = deliver(activities.reserve_stock, reserve(key))

    assert (taken.status, again.status, again.repeated) == ("held", "released", True)
    assert on_hand(stores)["us-east"]["SKU-1"] == (10, 0)


def test_a_repeated_authorisation_says_when_a_void_released_the_hold(
    stores: dict[str, Store], gateway: HttpGateway
) -> None:
    activities = PaymentActivities(stores["us-east"], gateway)
    key = payment_key("rerun")

    held = deliver(activities.authorise_payment, authorise(key))
    deliver(activities.void_payment, AuthorisationKey(key=key, order_id="rerun"))
    again = deliver(activities.authorise_payment, authorise(key))

    assert (held.status, again.status, again.repeated) == ("authorised", "voided", True)
