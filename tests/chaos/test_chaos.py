"""Regressions found by breaking things on purpose, each on a stack of its own (Temporal,
region workers as processes, a gateway). The faults under load are `geosaga torture`'s now
(tests/torture/, RELIABILITY.md); these are the cases a schedule seldom lands exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from geosaga.devserver import free_port
from geosaga.torture.proxy import Proxies
from regions.models import Capture
from tests.chaos.conftest import Chaos, record
from tests.helpers import new_key, order, outcome

pytestmark = pytest.mark.chaos


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


async def test_a_worker_started_while_its_store_is_down_waits_for_it(
    chaos: Chaos, postgres_database: str
) -> None:
    # Found by `geosaga torture` (a PostgreSQL store cut off as its worker restarted): the
    # worker waited for Temporal but not for its database, and exited with a traceback.
    port, url = _unreachable_store(postgres_database)
    chaos.stack.kill_worker("us-east")
    chaos.stack.start_worker("us-east", database_urls={"us-east": url})
    log = chaos.stack.folder / "worker-us-east.log"
    await _until_logged(log, "store is not reachable")
    assert chaos.stack.worker_running("us-east"), log.read_text()[-2000:]

    proxies = Proxies()
    await proxies.add("store-us-east", port, ("127.0.0.1", 5432))
    try:
        await chaos.stack.wait_for_workers()
        assert chaos.stack.worker_running("us-east")
    finally:
        await proxies.close()


async def test_a_worker_that_loses_temporal_while_it_waits_for_its_store_waits_again(
    chaos: Chaos, postgres_database: str
) -> None:
    # Found by `geosaga torture --seed 107 --minutes 5 --store postgres`: a worker restarted
    # while its store was cut off connected to Temporal, then waited for the store; Temporal
    # was cut off meanwhile, so starting the relays failed and the worker exited.
    port, url = _unreachable_store(postgres_database)
    chaos.stack.kill_worker("us-east")
    chaos.stack.start_worker("us-east", database_urls={"us-east": url}, replication=True)
    log = chaos.stack.folder / "worker-us-east.log"
    await _until_logged(log, "store is not reachable")
    chaos.stack.kill_temporal()

    proxies = Proxies()
    await proxies.add("store-us-east", port, ("127.0.0.1", 5432))
    try:
        await _until_logged(log, "Temporal at")  # once the store answered, starting the relays
        await asyncio.sleep(1)
        assert chaos.stack.worker_running("us-east"), log.read_text()[-2000:]
        await chaos.stack.start_temporal()
        await chaos.stack.wait_for_workers()
        assert chaos.stack.worker_running("us-east")
    finally:
        await proxies.close()


async def _until_logged(log: Path, words: str) -> None:
    for _ in range(600):
        if log.exists() and words in log.read_text():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{words!r} never appeared in {log}:\n{log.read_text()[-2000:]}")


def _unreachable_store(postgres_database: str) -> tuple[int, str]:
    """A schema of its own in the test database, behind a port nothing listens on yet: the
    store is unreachable until a proxy opens that port."""
    schema = f"down{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    database = postgres_database.rsplit("/", 1)[1]
    port = free_port()
    options = f"options=-csearch_path%3D{schema}"
    return port, f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}?{options}"
