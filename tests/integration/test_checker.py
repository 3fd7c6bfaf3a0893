"""The invariant checker finds each broken promise (so a clean report means something)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from geosaga.check import Report, check
from regions.models import Authorisation, Capture, OutboxEvent, Stock
from regions.store import Store
from regions.values import AuthorisationStatus
from tests.helpers import new_key, order, place, stock
from workflows.contract import SagaState

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def sagas(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> list[SagaState]:
    stock(stores, {"us-east": {"SKU-1": 10}, "eu-west": {"SKU-2": 5}})
    return [
        await place(api, client, order("us-east", [("SKU-1", 2)])),
        await place(api, client, order("eu-west", [("SKU-2", 1)], token="tok_decline")),
    ]


async def test_a_clean_run_passes(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    done = await sagas(api, client, stores)

    report = await check(client, stores, orders=[s.order_id for s in done])

    assert report.ok, report.violations
    assert report.orders == 2


def _reserve_phantom(session: Session, done: list[SagaState]) -> None:
    row = session.get(Stock, "SKU-1")
    assert row is not None
    row.reserved += 1
    session.add(row)


def _lose_stock(session: Session, done: list[SagaState]) -> None:
    row = session.get(Stock, "SKU-1")
    assert row is not None
    row.on_hand -= 1
    session.add(row)


def _charge_a_declined_order(session: Session, done: list[SagaState]) -> None:
    [declined] = session.exec(select(Authorisation)).all()
    session.add(
        Capture(
            authorisation_key=declined.key,
            order_id=declined.order_id,
            amount_minor=declined.amount_minor,
            currency=declined.currency,
            gateway_ref="sbx_taken",
        )
    )


def _reserve_twice(session: Session, done: list[SagaState]) -> None:
    [event] = session.exec(select(OutboxEvent).where(OutboxEvent.event_type == "StockReserved"))
    session.add(
        OutboxEvent(
            **{**event.model_dump(exclude={"id"}), "event_id": new_key()[:36], "sequence": 99}
        )
    )


def _keep_a_hold(session: Session, done: list[SagaState]) -> None:
    session.add(
        Authorisation(
            key="stray",
            order_id=done[1].order_id,
            customer_id="cust-1",
            amount_minor=2400,
            currency="USD",
            status=AuthorisationStatus.AUTHORISED,
            gateway_ref="sbx_stray",
            created_at=datetime.now(UTC),
        )
    )


@pytest.mark.parametrize(
    ("region", "tamper", "rule"),
    [
        ("us-east", _reserve_phantom, "reserved"),
        ("us-east", _lose_stock, "conservation"),
        ("eu-west", _charge_a_declined_order, "money"),
        ("us-east", _reserve_twice, "once"),
        ("eu-west", _keep_a_hold, "authorisation"),
    ],
)
async def test_each_broken_promise_is_reported(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    region: str,
    tamper: Callable[[Session, list[SagaState]], None],
    rule: str,
) -> None:
    done = await sagas(api, client, stores)
    with stores[region].transaction() as session:
        tamper(session, done)

    report: Report = await check(client, stores, orders=[s.order_id for s in done])

    assert [v.rule for v in report.violations] == [rule], report.violations


async def test_an_accepted_order_temporal_does_not_know_is_reported_lost(
    client: Client, stores: dict[str, Store]
) -> None:
    report = await check(client, stores, orders=["never-started"])

    assert [(v.rule, "never-started" in v.detail) for v in report.violations] == [
        ("accepted", True)
    ]
