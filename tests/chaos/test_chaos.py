"""Breaking things on purpose, under load: every scenario ends with the invariant checker.

Each test runs its own Temporal dev server and region worker processes, so it can SIGKILL
them. The numbers each leaves in test-artifacts/reliability/ are RELIABILITY.md's table.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select

from regions.models import Capture
from tests.chaos.conftest import Chaos, record
from tests.helpers import new_key, order, outcome

pytestmark = pytest.mark.chaos

ALL_FAULTS = {
    "latency_rate": 0.3,
    "latency_seconds": 0.3,
    "error_rate": 0.1,
    "lost_reply_rate": 0.1,
    "timeout_rate": 0.05,
    "timeout_seconds": 4.0,
}


async def test_region_workers_killed_mid_saga_and_restarted(chaos: Chaos, artifacts: Path) -> None:
    loading = asyncio.create_task(chaos.load(orders=80, concurrency=4, pace=0.2))
    killed = []
    for region in ("us-east", "eu-west", "us-east", "ap-south"):
        await asyncio.sleep(0.8)
        chaos.stack.kill_worker(region)
        killed.append(region)
        await asyncio.sleep(0.5)
        chaos.stack.start_worker(region)
        await chaos.stack.wait_for_workers()
    load = await loading

    ended = await chaos.settle(load)
    report = await chaos.verify(load)

    assert len(load.accepted) == load.submitted
    assert sum(ended.values()) == len(load.accepted)
    record(
        artifacts,
        "worker-kill",
        load=f"{load.submitted} orders, 4 at a time over ~4 s",
        faults=f"SIGKILL of a region worker {len(killed)} times ({', '.join(killed)}), restarted",
        accepted=len(load.accepted),
        refused=load.refused,
        ended=ended,
        violations=len(report.violations),
    )


async def test_temporal_killed_and_restarted_on_its_database(chaos: Chaos, artifacts: Path) -> None:
    loading = asyncio.create_task(chaos.load(orders=80, concurrency=4, pace=0.2))
    await asyncio.sleep(1.5)
    chaos.stack.kill_temporal()
    await asyncio.sleep(1.0)
    await chaos.stack.start_temporal()
    load = await loading

    ended = await chaos.settle(load)
    report = await chaos.verify(load)

    # A submission during the outage waits for Temporal (the client retries) or, if it gives
    # up, is refused with 503; none is accepted and then lost.
    assert set(load.refused) <= {503}
    assert sum(ended.values()) == len(load.accepted)
    record(
        artifacts,
        "temporal-kill",
        load=f"{load.submitted} orders, 4 at a time over ~4 s",
        faults="SIGKILL of the Temporal dev server, restarted on the same database file",
        accepted=len(load.accepted),
        refused=load.refused,
        ended=ended,
        violations=len(report.violations),
    )


@pytest.mark.parametrize(
    "chaos", [{region: ALL_FAULTS for region in ("us-east", "eu-west", "ap-south")}], indirect=True
)
async def test_latency_timeouts_and_database_errors_in_every_region(
    chaos: Chaos, artifacts: Path
) -> None:
    load = await chaos.load(orders=40, concurrency=8)

    ended = await chaos.settle(load)
    report = await chaos.verify(load)

    assert len(load.accepted) == load.submitted
    record(
        artifacts,
        "injected-faults",
        load=f"{load.submitted} orders, 8 at a time",
        faults="per activity attempt in every region: 30% +0.3 s latency, 10% transient DB "
        "error, 10% lost reply after commit, 5% stall past the 3 s timeout",
        accepted=len(load.accepted),
        refused=load.refused,
        ended=ended,
        violations=len(report.violations),
    )


async def test_a_region_cut_off_longer_than_the_allocation_timeout(
    chaos: Chaos, artifacts: Path
) -> None:
    chaos.stack.kill_worker("ap-south")
    load = await chaos.load(orders=30, concurrency=6)
    # Longer than the allocation timeout (2 s) and the payment timeout (8 s): ap-south's own
    # orders cannot be paid and compensate; their voids wait for ap-south to come back.
    await asyncio.sleep(10)
    chaos.stack.start_worker("ap-south")
    await chaos.stack.wait_for_workers()

    ended = await chaos.settle(load)
    report = await chaos.verify(load)

    assert len(load.accepted) == load.submitted
    record(
        artifacts,
        "region-cut-off",
        load=f"{load.submitted} orders, 6 at a time",
        faults="ap-south's worker down for ~12 s (allocation timeout 2 s, payment timeout 8 s)",
        accepted=len(load.accepted),
        refused=load.refused,
        ended=ended,
        violations=len(report.violations),
    )


async def test_a_hundred_concurrent_submissions_with_one_key(chaos: Chaos, artifacts: Path) -> None:
    key = new_key()
    body = order("us-east", [("SKU-1", 2)])

    responses = await asyncio.gather(
        *(
            chaos.api.post("/orders", json=body, headers={"Idempotency-Key": key})
            for _ in range(100)
        )
    )
    saga = await outcome(chaos.client, key)
    report = await chaos.verify_orders([key])

    assert {r.status_code for r in responses} == {202}
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert saga.status == "completed"
    with chaos.stores["us-east"].reading() as session:
        captures = session.exec(select(Capture)).all()
    assert [c.order_id for c in captures] == [key]
    record(
        artifacts,
        "one-key",
        load="100 concurrent POST /orders, one Idempotency-Key",
        faults="none: the race itself",
        accepted=1,
        refused={},
        ended={saga.status: 1},
        captures=len(captures),
        violations=len(report.violations),
    )


async def test_a_worker_started_while_temporal_is_down_waits_for_it(chaos: Chaos) -> None:
    # Found by the Temporal-kill scenario: a worker that could not connect when it started
    # exited at once, so a region stayed down after Temporal came back.
    chaos.stack.kill_worker("us-east")
    chaos.stack.kill_temporal()
    chaos.stack.start_worker("us-east")
    await asyncio.sleep(2)  # the worker tries, and fails, to connect meanwhile
    await chaos.stack.start_temporal()
    await chaos.stack.wait_for_workers()

    response = await chaos.api.post(
        "/orders", json=order("us-east", [("SKU-1", 1)]), headers={"Idempotency-Key": new_key()}
    )
    saga = await outcome(chaos.client, response.json()["order_id"])

    assert saga.status == "completed"
    await chaos.verify_orders([saga.order_id])
