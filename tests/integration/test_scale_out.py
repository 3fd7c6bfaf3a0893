"""Scale-out: two `geosaga api` processes and two `geosaga worker` processes per region, one
Temporal server, region stores and the payment gateway's on PostgreSQL. Orders go to both APIs
at once (some to both, under one Idempotency-Key), and every saga runs once and ends once: one
workflow run per order, the invariants hold, and the work was shared between processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from temporalio.api.enums.v1 import EventType

from foundation.settings import Settings
from foundation.temporal import connect
from geosaga.check import check, summary
from geosaga.devserver import DevServer, free_port
from regions.store import Store, close_stores, open_stores
from regions.values import Reason, SagaStatus
from tests.gateway_server import GatewayServer, gateway_process
from tests.helpers import TEST_API_KEY, order, outcome, stock
from workflows.contract import workflow_id

REPLICAS = 2
ORDERS = 30
# Every third order is sent to both APIs at once under one key.
SENT_TWICE = range(0, ORDERS, 3)
DECLINED = range(1, ORDERS, 5)
STARTUP_SECONDS = 90.0


class Stack:
    def __init__(self, settings: Settings, env: dict[str, str], folder: Path) -> None:
        self.settings = settings
        self.env = env
        self.folder = folder
        self.apis: list[str] = []
        self.metrics_ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.gateway: GatewayServer | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with (self.folder / f"{name}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "geosaga", *args],
                    env={**self.env, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def log_lines(self, prefix: str) -> list[dict[str, Any]]:
        """The JSON log lines of the processes whose name starts with `prefix`."""
        lines = []
        for log in sorted(self.folder.glob(f"{prefix}*.log")):
            for line in log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        lines.append(entry)
        return lines

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-1500:]}"
            for log in sorted(self.folder.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def scale_settings(temporal_server: DevServer, postgres_database: str, tmp_path: Path) -> Settings:
    """A fresh prefix for task queues and for the regions' PostgreSQL schemas."""
    prefix = f"s{uuid.uuid4().hex[:10]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    settings = Settings(
        temporal_address=temporal_server.address,
        workflow_task_queue=f"{prefix}.orders",
        region_task_queue_prefix=f"{prefix}.region.",
        data_dir=tmp_path,
        database_url_template=f"{postgres_database}?options=-csearch_path%3D{prefix}_{{region_id}}",
        replication=False,
    )
    with engine.connect() as connection:
        for region in settings.regions:
            connection.execute(text(f'CREATE SCHEMA "{prefix}_{region.replace("-", "_")}"'))
    engine.dispose()
    return settings


@pytest.fixture
def stack(scale_settings: Settings, postgres_database: str, tmp_path: Path) -> Iterator[Stack]:
    s = scale_settings
    # The gateway every worker process calls, its ledger in a schema of its own.
    schema = f"gateway_{uuid.uuid4().hex[:10]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    gateway_url = f"{postgres_database}?options=-csearch_path%3D{schema}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GEOSAGA_")},
        "GEOSAGA_TEMPORAL_ADDRESS": s.temporal_address,
        "GEOSAGA_WORKFLOW_TASK_QUEUE": s.workflow_task_queue,
        "GEOSAGA_REGION_TASK_QUEUE_PREFIX": s.region_task_queue_prefix,
        "GEOSAGA_DATA_DIR": str(s.data_dir),
        "GEOSAGA_DATABASE_URL_TEMPLATE": s.database_url_template,
        "GEOSAGA_REPLICATION": "false",
        "GEOSAGA_API_KEYS": TEST_API_KEY,
        "GEOSAGA_LOG_FORMAT": "json",
        # Two APIs and six workers share the machine with everything else: a stock check that
        # waits its turn for the CPU must not count as a region with nothing to offer.
        "GEOSAGA_ALLOCATION_TIMEOUT_SECONDS": "30",
    }
    with ExitStack() as cleanup:
        gateway = cleanup.enter_context(gateway_process(tmp_path, gateway_url))
        env["GEOSAGA_GATEWAY_URL"] = gateway.url
        env["GEOSAGA_GATEWAY_API_KEY"] = gateway.key
        running = Stack(s, env, tmp_path)
        running.gateway = gateway
        cleanup.callback(running.stop)
        for replica in range(REPLICAS):
            port = free_port()
            running.apis.append(f"http://127.0.0.1:{port}")
            running.spawn(
                f"api-{replica}",
                ["api"],
                {"GEOSAGA_API_HOST": "127.0.0.1", "GEOSAGA_API_PORT": str(port)},
            )
            for region in s.regions:
                running.metrics_ports.append(free_port())
                running.spawn(
                    f"worker-{region}-{replica}",
                    ["worker", "--region", region],
                    {"GEOSAGA_WORKER_METRICS_PORT": str(running.metrics_ports[-1])},
                )
        yield running


@pytest_asyncio.fixture
async def stores(scale_settings: Settings) -> AsyncIterator[dict[str, Store]]:
    opened = open_stores(scale_settings, create=False)
    yield opened
    close_stores(opened)


async def until_up(stack: Stack) -> None:
    """Both APIs answer /healthz, and every worker process polls its queues (the pollers
    gauge of the SDK's metrics, which each worker serves on a port of its own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS

    async def ready(http: httpx.AsyncClient, url: str, serving: Callable[[str], bool]) -> None:
        while True:
            assert all(p.poll() is None for p in stack.processes), stack.logs()
            assert loop.time() < deadline, f"{url} is not ready\n{stack.logs()}"
            try:
                response = await http.get(url)
                if response.status_code == 200 and serving(response.text):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)

    def polling(exposition: str) -> bool:
        pollers = {
            sample.labels.get("poller_type", ""): sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "temporal_num_pollers"
        }
        return any(v > 0 for k, v in pollers.items() if k.startswith("workflow")) and any(
            v > 0 for k, v in pollers.items() if k.startswith("activity")
        )

    async with httpx.AsyncClient(timeout=5) as http:
        for api in stack.apis:
            await ready(http, f"{api}/healthz", lambda _: True)
        for port in stack.metrics_ports:
            await ready(http, f"http://127.0.0.1:{port}/metrics", polling)


async def test_two_apis_and_two_workers_per_region_run_every_saga_once(
    stack: Stack, stores: dict[str, Store]
) -> None:
    settings = stack.settings
    client = await connect(settings)
    await until_up(stack)
    regions = list(settings.regions)
    stock(stores, {region: {"SKU-1": 100, "SKU-2": 100} for region in regions})
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}

    async with httpx.AsyncClient(headers=headers, timeout=30) as http:

        async def submit(number: int, key: str, api: str) -> str:
            body = order(
                regions[number % len(regions)],
                [("SKU-1", 1 + number % 3), ("SKU-2", 1)],
                token="tok_decline" if number in DECLINED else "tok_ok",
                customer=f"scale-{number}",
            )
            response = await http.post(f"{api}/orders", json=body, headers={"Idempotency-Key": key})
            assert response.status_code == 202, response.text
            order_id: str = response.json()["order_id"]
            return order_id

        sends = []
        for number in range(ORDERS):
            apis = stack.apis if number in SENT_TWICE else [stack.apis[number % REPLICAS]]
            key = f"scale-{uuid.uuid4().hex[:8]}-{number}"
            sends.append(asyncio.gather(*(submit(number, key, api) for api in apis)))
        accepted = await asyncio.gather(*sends)

    # A key sent to both APIs names one order: its key.
    assert all(len(set(ids)) == 1 for ids in accepted), accepted
    order_ids = [ids[0] for ids in accepted]
    assert len(set(order_ids)) == ORDERS
    ended = [await outcome(client, order_id, timeout=120) for order_id in order_ids]

    for number, state in enumerate(ended):
        if number in DECLINED:
            assert (state.status, state.reason) == (
                SagaStatus.COMPENSATED,
                Reason.PAYMENT_DECLINED,
            ), state
        else:
            assert state.status == SagaStatus.COMPLETED, state
    report = await check(client, stores, orders=order_ids, settled=True)
    assert report.ok, summary(report)
    # The gateway's own books agree: one capture per completed order, no hold left open.
    assert stack.gateway is not None
    books = await asyncio.to_thread(stack.gateway.ledger)
    for number, order_id in enumerate(order_ids):
        ref = f"{workflow_id(order_id)}/authorise/{regions[number % len(regions)]}"
        kinds = [entry["kind"] for entry in books if entry["reference"] == ref]
        assert kinds == (["declined"] if number in DECLINED else ["authorised", "captured"]), ref

    # One run per order, and the work was shared: workflow tasks and activities were taken
    # by more than one process.
    workflow_workers: set[str] = set()
    activity_workers: set[str] = set()
    for order_id in order_ids:
        handle = client.get_workflow_handle(workflow_id(order_id))
        history = await handle.fetch_history()
        started = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        ]
        assert len(started) == 1, order_id
        assert not started[0].workflow_execution_started_event_attributes.continued_execution_run_id
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                workflow_workers.add(event.workflow_task_completed_event_attributes.identity)
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                activity_workers.add(event.activity_task_started_event_attributes.identity)
    runs = [
        execution
        async for execution in client.list_workflows(
            f'TaskQueue = "{settings.workflow_task_queue}"'
        )
    ]
    assert sorted(execution.id for execution in runs) == sorted(map(workflow_id, order_ids))
    assert len(workflow_workers) > 1, workflow_workers
    assert len(activity_workers) > len(regions), activity_workers

    # Log lines carry trace ids across processes: a declined saga's log line in a worker has
    # the trace id of the API request that started it.
    requests = {
        line["trace_id"]
        for line in stack.log_lines("api-")
        if "POST /orders" in line["message"] and line["trace_id"] != "-"
    }
    aborted = {
        order_id: line["trace_id"]
        for line in stack.log_lines("worker-")
        if line["message"].startswith("saga aborted (payment_declined)")
        for order_id in order_ids
        if f"'{workflow_id(order_id)}'" in line["message"]
    }
    assert set(aborted) == {order_ids[number] for number in DECLINED}, aborted
    assert set(aborted.values()) <= requests, (aborted, requests)
