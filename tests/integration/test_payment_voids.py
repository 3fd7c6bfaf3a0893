"""A void goes to the gateway until the gateway confirms it, and no hold outlives it.

The defect these pin down: a void that overtook its authorisation was tried at the gateway
once; when that call failed, every retry found the store's record "voided" and returned, so
the gateway kept the hold while the store said it was gone. Each test reads the gateway's own
books (its ledger) as well as the region's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.contract import AuthorisationKey, AuthorisePayment
from activities.gateway import GatewayUnavailable
from activities.gateway_client import HttpGateway
from activities.payments import PaymentActivities
from foundation.settings import Settings
from regions.models import Authorisation, ProcessedKey
from regions.store import Store
from regions.values import AuthorisationStatus, Reason, SagaStatus
from tests.gateway_server import GatewayServer
from tests.helpers import assert_invariants, new_key, order, outcome, stock, submit, until
from workflows.contract import StepStatus, workflow_id

T = TypeVar("T")


def deliver(activity: Callable[..., T], *args: object) -> T:
    return ActivityEnvironment().run(activity, *args)


@pytest.fixture
def faults(gateway_server: GatewayServer) -> Iterator[Callable[..., None]]:
    """Sets the session gateway's faults; none outlives the test."""
    yield gateway_server.set_faults
    gateway_server.set_faults()


@pytest.fixture
def payments(settings: Settings, stores: dict[str, Store]) -> Iterator[PaymentActivities]:
    gateway = HttpGateway.from_settings(settings)
    yield PaymentActivities(stores["us-east"], gateway)
    gateway.close()


def authorise(key: str, token: str = "tok_ok") -> AuthorisePayment:
    return AuthorisePayment(
        key=key,
        order_id=key.split("/")[0],
        customer_id="cust-1",
        amount=Decimal("25.00"),
        currency="USD",
        payment_token=token,
    )


def void(key: str) -> AuthorisationKey:
    return AuthorisationKey(key=key, order_id=key.split("/")[0])


def in_store(store: Store, key: str) -> tuple[str | None, bool]:
    """The store's authorisation status, and whether a void of it is recorded."""
    with store.reading() as session:
        row = session.get(Authorisation, key)
        recorded = session.get(ProcessedKey, f"void:{key}") is not None
    return (row.status if row else None), recorded


def kinds(gateway: GatewayServer, key: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["idempotency_key"]) for e in gateway.ledger(key)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_void_the_gateway_fails_is_retried_until_it_confirms(
    payments: PaymentActivities,
    stores: dict[str, Store],
    gateway_server: GatewayServer,
    faults: Callable[..., None],
) -> None:
    key = f"{new_key()}/authorise/us-east"
    deliver(payments.authorise_payment, authorise(key))
    faults(error_rate=1)

    for _ in range(3):
        with pytest.raises(GatewayUnavailable, match="503"):
            deliver(payments.void_payment, void(key))
        # Nothing recorded: the next attempt goes to the gateway again.
        assert in_store(stores["us-east"], key) == (AuthorisationStatus.AUTHORISED, False)
    faults()
    voided = deliver(payments.void_payment, void(key))

    assert voided.status == AuthorisationStatus.VOIDED
    assert in_store(stores["us-east"], key) == (AuthorisationStatus.VOIDED, True)
    assert [a["status"] for a in gateway_server.authorisations(key)] == ["voided"]
    assert kinds(gateway_server, key) == [("authorised", key), ("voided", f"{key}/void")]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_void_that_overtakes_its_authorisation_and_fails_leaves_no_hold(
    payments: PaymentActivities,
    stores: dict[str, Store],
    gateway_server: GatewayServer,
    faults: Callable[..., None],
) -> None:
    """The void runs first (the authorisation timed out) and its gateway call fails; the
    authorisation then lands at the gateway after all. The void's retry voids it there."""
    key = f"{new_key()}/authorise/us-east"
    faults(error_rate=1)
    with pytest.raises(GatewayUnavailable):
        deliver(payments.void_payment, void(key))
    faults()

    late = deliver(payments.authorise_payment, authorise(key))
    assert [a["status"] for a in gateway_server.authorisations(key)] == ["authorised"]
    retried = deliver(payments.void_payment, void(key))

    assert late.status == AuthorisationStatus.AUTHORISED
    assert retried.status == AuthorisationStatus.VOIDED
    assert in_store(stores["us-east"], key) == (AuthorisationStatus.VOIDED, True)
    assert [a["status"] for a in gateway_server.authorisations(key)] == ["voided"]
    assert kinds(gateway_server, key) == [("authorised", key), ("voided", f"{key}/void")]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_paused_authorisation_that_lands_before_its_void_fails_is_released(
    payments: PaymentActivities,
    settings: Settings,
    stores: dict[str, Store],
    gateway_server: GatewayServer,
) -> None:
    """A worker took a hold at the gateway and stalled before writing it down; the void that
    overtook it cannot void a tok_void_fail hold, so it keeps failing (before the fix, its
    tombstone answered every retry) until a person releases the hold in the console."""
    key = f"{new_key()}/authorise/us-east"
    gateway = HttpGateway.from_settings(settings)
    held = gateway.authorise(key, "tok_void_fail", Decimal("25.00"), "USD")
    gateway.close()

    for _ in range(3):
        with pytest.raises(GatewayUnavailable, match="console"):
            deliver(payments.void_payment, void(key))
        assert in_store(stores["us-east"], key) == (None, False)
    gateway_server.release(held.id)
    voided = deliver(payments.void_payment, void(key))
    resumed = deliver(payments.authorise_payment, authorise(key, "tok_void_fail"))

    assert voided.status == AuthorisationStatus.VOIDED
    assert resumed.status == AuthorisationStatus.VOIDED
    assert resumed.gateway_ref == held.id
    assert in_store(stores["us-east"], key) == (AuthorisationStatus.VOIDED, True)
    assert [a["status"] for a in gateway_server.authorisations(key)] == ["voided"]
    assert kinds(gateway_server, key) == [("authorised", key), ("voided", "console")]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_void_whose_reply_was_lost_is_recorded_on_its_retry(
    payments: PaymentActivities,
    stores: dict[str, Store],
    gateway_server: GatewayServer,
    faults: Callable[..., None],
) -> None:
    """The gateway voided, and the worker never heard (as if it died before its own write)."""
    key = f"{new_key()}/authorise/us-east"
    deliver(payments.authorise_payment, authorise(key))
    faults(lost_reply_rate=1)

    with pytest.raises(GatewayUnavailable, match="502"):
        deliver(payments.void_payment, void(key))
    assert in_store(stores["us-east"], key) == (AuthorisationStatus.AUTHORISED, False)
    assert [a["status"] for a in gateway_server.authorisations(key)] == ["voided"]
    faults()
    voided = deliver(payments.void_payment, void(key))

    assert voided.status == AuthorisationStatus.VOIDED
    assert in_store(stores["us-east"], key) == (AuthorisationStatus.VOIDED, True)
    assert kinds(gateway_server, key) == [("authorised", key), ("voided", f"{key}/void")]


# Whole sagas ----------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A stuck void's next round comes within seconds, not minutes."""
    return settings.model_copy(update={"compensation_max_backoff_seconds": 1.0})


def reference(order_id: str, region: str = "us-east") -> str:
    return f"{workflow_id(order_id)}/authorise/{region}"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_stuck_void_finishes_once_the_hold_is_released_in_the_console(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    gateway_server: GatewayServer,
) -> None:
    initial = stock(stores, {})
    order_id = await submit(api, order("us-east", [("SKU-4", 2)], token="tok_void_fail"))
    await until(client, order_id, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
    [held] = await asyncio.to_thread(gateway_server.authorisations, reference(order_id))

    await asyncio.to_thread(gateway_server.release, held["id"])
    saga = await outcome(client, order_id)

    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.OUT_OF_STOCK
    [void_step] = saga.compensations
    assert (void_step.name, void_step.status) == ("void", StepStatus.SUCCEEDED)
    assert void_step.attempts > 1
    assert in_store(stores["us-east"], reference(order_id)) == (AuthorisationStatus.VOIDED, True)
    assert [k for k, _ in kinds(gateway_server, reference(order_id))] == ["authorised", "voided"]
    assert_invariants(stores, initial, [saga])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sagas_under_gateway_faults_capture_once_and_leave_no_hold(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    gateway_server: GatewayServer,
    faults: Callable[..., None],
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 20}, "eu-west": {"SKU-1": 20}})
    faults(error_rate=0.3, lost_reply_rate=0.3, latency_rate=0.3, latency_seconds=0.1, seed=11)
    bodies: list[dict[str, Any]] = [
        order("us-east", [("SKU-1", 1)]),
        order("eu-west", [("SKU-1", 2)]),
        order("us-east", [("SKU-1", 1)], token="tok_decline"),
        order("eu-west", [("SKU-4", 3)]),  # out of stock: the hold is voided
        order("us-east", [("SKU-1", 1)], token="tok_flaky"),
        order("eu-west", [("SKU-4", 1)], token="tok_flaky"),
    ]

    order_ids = [await submit(api, body) for body in bodies]
    sagas = await asyncio.gather(*(outcome(client, o, timeout=120) for o in order_ids))

    assert [s.status for s in sagas] == [
        SagaStatus.COMPLETED,
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
    ]
    assert_invariants(stores, initial, sagas)
    for saga in sagas:
        ref = reference(saga.order_id, saga.home_region)
        books = await asyncio.to_thread(gateway_server.ledger, ref)
        captured = [e for e in books if e["kind"] == "captured"]
        [made] = await asyncio.to_thread(gateway_server.authorisations, ref)
        if saga.status == SagaStatus.COMPLETED:
            assert made["status"] == "captured", saga.order_id
            assert [e["amount"] for e in captured] == [f"{saga.total:.2f}"], saga.order_id
        else:
            assert made["status"] in ("declined", "voided"), (saga.order_id, made)
            assert captured == [], saga.order_id
