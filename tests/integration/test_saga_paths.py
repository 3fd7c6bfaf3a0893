"""Each saga path end to end: HTTP → Temporal → region workers → region stores."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.client import Client

from regions.store import Store
from regions.values import Allocation, Reason, SagaStatus
from tests.cluster import Cluster
from tests.helpers import assert_invariants, order, outcome, place, stock, submit
from workflows.contract import StepStatus


async def test_completed_order_commits_stock_and_captures_payment(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 10}})

    saga = await place(api, client, order("us-east", [("SKU-1", 3)]))

    assert saga.status == SagaStatus.COMPLETED
    assert saga.reason is None
    assert saga.allocations == [Allocation(region="us-east", sku="SKU-1", quantity=3)]
    # The authorisation starts with the stock check, so it is recorded before the reservation.
    assert [(s.name, s.region) for s in saga.steps if s.name != "check_stock"] == [
        ("authorise", "us-east"),
        ("reserve", "us-east"),
        ("capture", "us-east"),
        ("commit", "us-east"),
        ("record_outcome", "us-east"),
    ]
    assert saga.compensations == []
    assert_invariants(stores, initial, [saga])


async def test_lines_split_across_regions_when_home_lacks_stock(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(
        stores, {"eu-west": {"SKU-2": 5, "SKU-1": 4}, "us-east": {"SKU-2": 20}, "ap-south": {}}
    )

    saga = await place(api, client, order("eu-west", [("SKU-2", 8), ("SKU-1", 2)]))

    assert saga.status == SagaStatus.COMPLETED
    assert sorted(saga.allocations, key=lambda a: (a.region, a.sku)) == [
        Allocation(region="eu-west", sku="SKU-1", quantity=2),
        Allocation(region="eu-west", sku="SKU-2", quantity=5),
        Allocation(region="us-east", sku="SKU-2", quantity=3),
    ]
    reserves = {s.region for s in saga.steps if s.name == "reserve"}
    assert reserves == {"eu-west", "us-east"}
    payments = {(s.name, s.region) for s in saga.steps if s.name in ("authorise", "capture")}
    assert payments == {("authorise", "eu-west"), ("capture", "eu-west")}
    assert_invariants(stores, initial, [saga])


async def test_declined_payment_releases_every_reservation(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-2": 2}, "ap-south": {"SKU-2": 5}})

    saga = await place(api, client, order("us-east", [("SKU-2", 4)], token="tok_decline"))

    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.PAYMENT_DECLINED
    assert saga.message is not None
    assert "card declined" in saga.message
    assert {s.region for s in saga.steps if s.name == "reserve"} == {"us-east", "ap-south"}
    compensations = [(c.name, c.region, c.status) for c in saga.compensations]
    # Reverse order of registration: both releases (registered together), then the void.
    assert sorted(compensations[:2]) == [
        ("release", "ap-south", StepStatus.SUCCEEDED),
        ("release", "us-east", StepStatus.SUCCEEDED),
    ]
    assert compensations[2] == ("void", "us-east", StepStatus.SUCCEEDED)
    assert_invariants(stores, initial, [saga])


async def test_out_of_stock_everywhere_compensates_at_once(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-4": 2}, "eu-west": {"SKU-4": 1}})

    saga = await place(api, client, order("eu-west", [("SKU-4", 5)]))

    assert saga.status == SagaStatus.COMPENSATED
    assert saga.reason == Reason.OUT_OF_STOCK
    assert saga.message is not None
    assert "SKU-4 (3 of 5)" in saga.message
    # Payment is authorised while stock is allocated; finding none voids the authorisation.
    assert [s.name for s in saga.steps if s.name != "check_stock"] == [
        "authorise",
        "record_outcome",
    ]
    assert [(c.name, c.status) for c in saga.compensations] == [("void", StepStatus.SUCCEEDED)]
    assert_invariants(stores, initial, [saga])


async def test_flaky_payment_is_retried_to_success(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 10}})

    saga = await place(api, client, order("us-east", [("SKU-1", 1)], token="tok_flaky"))

    assert saga.status == SagaStatus.COMPLETED
    [authorise] = [s for s in saga.steps if s.name == "authorise"]
    assert authorise.attempts == 3
    assert_invariants(stores, initial, [saga])


async def test_every_accepted_cancel_compensates_whatever_stage_it_lands_in(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 40}, "eu-west": {"SKU-1": 40}})
    sagas = []
    for token in ["tok_ok", "tok_flaky"] * 5:
        order_id = await submit(api, order("eu-west", [("SKU-1", 2)], token=token))
        cancelled = await api.post(f"/orders/{order_id}/cancel")
        saga = await outcome(client, order_id)
        if cancelled.status_code == 202:
            assert saga.status == SagaStatus.COMPENSATED, saga
            assert saga.reason == Reason.CANCELLED
        else:
            # The saga outran the cancel: it may only be refused once payment is captured.
            assert cancelled.status_code == 409, cancelled.text
            assert saga.status == SagaStatus.COMPLETED
        sagas.append(saga)
    assert any(s.reason == Reason.CANCELLED for s in sagas)
    assert_invariants(stores, initial, sagas)


async def test_cancel_after_capture_is_refused(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 10}})
    order_id = await submit(api, order("us-east", [("SKU-1", 2)]))
    saga = await outcome(client, order_id)

    refused = await api.post(f"/orders/{order_id}/cancel")

    assert refused.status_code == 409
    assert "finished" in refused.json()["detail"]
    assert saga.status == SagaStatus.COMPLETED
    assert_invariants(stores, initial, [saga])


async def test_region_without_needed_stock_being_down_does_not_block(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store], cluster: Cluster
) -> None:
    initial = stock(stores, {"us-east": {"SKU-1": 5, "SKU-2": 1}, "eu-west": {"SKU-2": 3}})
    await cluster.stop("ap-south")

    local, split = await asyncio.gather(
        place(api, client, order("us-east", [("SKU-1", 2)])),
        place(api, client, order("us-east", [("SKU-2", 3)])),
    )

    assert local.status == SagaStatus.COMPLETED
    assert all(s.region == "us-east" for s in local.steps)
    assert split.status == SagaStatus.COMPLETED
    assert {a.region for a in split.allocations} == {"us-east", "eu-west"}
    [silent] = [s for s in split.steps if s.region == "ap-south"]
    assert silent.name == "check_stock"
    assert silent.status == StepStatus.FAILED
    assert_invariants(stores, initial, [local, split])
