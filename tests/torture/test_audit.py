"""The torture checker on a real run: a real Temporal server, the real API and in-process region
workers with replication on, stores on SQLite, a real `geosaga gateway` process, and the
harness's own client log. A clean run of real orders has no violation; then each promise is
broken on purpose, in the real parts, and its rule must fire naming the orders (or the region
and SKU) it concerns, and nothing else may.

The checker reads either store through the same SQLAlchemy code; the short torture on
PostgreSQL (test_torture.py) audits a PostgreSQL run end to end, so these run on SQLite only."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from api.main import create_app
from foundation.settings import Settings
from geosaga.devserver import DevServer, free_port
from geosaga.torture.audit import AuditReport, RunRecord, Violation, audit
from geosaga.torture.audit.stores import behind
from geosaga.torture.clientlog import ClientLog, Exchange, LoggedClient
from regions import inventory, outbox
from regions.clock import use_skew
from regions.events import StockReserved
from regions.models import (
    CartOperation,
    InboxEvent,
    OrderView,
    ReplicationSource,
    Reservation,
    ReservationLine,
    Stock,
)
from regions.store import Store, close_stores, open_stores
from regions.values import ReservationStatus, SagaStatus, StockLine
from tests.cluster import Cluster
from tests.gateway_server import GatewayServer, gateway_process
from tests.helpers import TEST_API_KEY, auth_headers, outcome, until
from workflows.contract import OrderInput, SagaState, workflow_id
from workflows.order_saga import OrderSaga

_SETTLE_SECONDS = 90.0
_RESOLUTION = {"resolved_by": "ops@example.com", "note": "released in the gateway console"}


@dataclass
class Run:
    """A small run of real orders, and the tools to break it."""

    prefix: str
    folder: Path
    settings: Settings
    stores: dict[str, Store]
    client: Client
    gateway: GatewayServer
    api: LoggedClient
    console: LoggedClient
    record: RunRecord

    def key(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    async def post_order(
        self, name: str, home: str, lines: list[tuple[str, int]], token: str = "tok_ok"
    ) -> Exchange:
        body = {
            "customer_id": "cust-1",
            "home_region": home,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
            "payment_token": token,
        }
        headers = {"Idempotency-Key": self.key(name)}
        return await self.api.call("orders", "POST", "/orders", body=body, headers=headers)

    async def order(
        self, name: str, home: str, lines: list[tuple[str, int]], token: str = "tok_ok"
    ) -> SagaState:
        sent = await self.post_order(name, home, lines, token)
        assert sent.status == 202, sent.answer
        return await outcome(self.client, self.key(name))

    async def stuck(self, name: str) -> str:
        """An order whose hold cannot be voided: out of stock, its saga needs attention."""
        await self.post_order(name, "us-east", [("SKU-4", 50)], "tok_void_fail")
        await until(
            self.client,
            self.key(name),
            lambda s: s.status == SagaStatus.NEEDS_ATTENTION,
            timeout=_SETTLE_SECONDS,
        )
        return self.key(name)

    async def release_hold(self, order_id: str) -> None:
        """What the operator does in the gateway's console."""
        [hold] = self.gateway.authorisations(f"{workflow_id(order_id)}/authorise/us-east")
        path = f"/console/authorisations/{hold['id']}/release"
        released = await self.console.call("operator", "POST", path)
        assert released.status == 200, released.answer

    async def resolve(self, order_id: str) -> SagaState:
        path = f"/orders/{order_id}/resolve"
        resolved = await self.api.call("operator", "POST", path, body=_RESOLUTION)
        assert resolved.status == 202, resolved.answer
        return await outcome(self.client, order_id)

    async def quiet(self) -> None:
        """Until every region has applied every other region's events."""
        deadline = time.monotonic() + _SETTLE_SECONDS
        while not all([await asyncio.to_thread(self._caught_up, r) for r in self.stores]):
            assert time.monotonic() < deadline, "replication never caught up"
            await asyncio.sleep(0.2)

    def _caught_up(self, region: str) -> bool:
        return not any(behind(self.stores, region).values())

    async def audit(self) -> AuditReport:
        await self.quiet()
        return await audit(self.record)

    async def new_violations(self, breaking: Callable[[], Awaitable[object]]) -> list[Violation]:
        """What breaking something adds to the violations already there (none in a clean run;
        the breaks that cannot be undone leave theirs behind)."""
        before = set((await self.audit()).violations)
        await breaking()
        return [v for v in (await self.audit()).violations if v not in before]

    def append_exchange(self, **line: Any) -> None:
        seq = 1_000_000 + len(self.record.client_log.read_text().splitlines())
        whole = {
            "seq": seq,
            "actor": "test",
            "sent_at": 1.0,
            "answered_at": 1.1,
            "headers": {},
            "body": None,
            "answer": None,
            "error": None,
            **line,
        }
        with self.record.client_log.open("a") as log:
            log.write(json.dumps(whole) + "\n")

    def append_fault(self, **fault: Any) -> None:
        with self.record.nemesis_log.open("a") as log:
            log.write(json.dumps({"params": {}, "note": None, **fault}) + "\n")


def _gateway_http(gateway: GatewayServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers, timeout=30)


def _settings(
    temporal: DevServer, gateway: GatewayServer, backend: str, folder: Path, postgres: str | None
) -> Settings:
    prefix = f"a{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        template = f"sqlite:///{folder}/{{region}}.db"
    else:
        template = f"{postgres}?options=-csearch_path%3D{prefix}_{{region_id}}"
    return Settings(
        temporal_address=temporal.address,
        temporal_ui_url=temporal.ui_url,
        workflow_task_queue=f"{prefix}.orders",
        region_task_queue_prefix=f"{prefix}.region.",
        data_dir=folder,
        database_url_template=template,
        allocation_timeout_seconds=2.0,
        retry_initial_interval_seconds=0.1,
        retry_maximum_interval_seconds=0.5,
        compensation_attempts_before_attention=3,
        compensation_attention_after_seconds=5.0,
        compensation_max_backoff_seconds=2.0,
        replication_linger_seconds=0.1,
        # A failing event is dead-lettered after two tries, not five (the relay backs off), and
        # one from a clock too far ahead after two seconds of waiting for it to close in.
        replication_max_attempts=2,
        replication_hold_seconds=2.0,
        api_keys=(SecretStr(TEST_API_KEY),),
        gateway_url=gateway.url,
        gateway_api_key=SecretStr(gateway.key),
    )


def _prepare(settings: Settings, backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        migrated: Path = request.getfixturevalue("sqlite_stores")
        for region in settings.regions:
            shutil.copyfile(migrated / f"{region}.db", settings.data_dir / f"{region}.db")
        return
    engine = create_engine(
        request.getfixturevalue("postgres_database"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        for region in settings.regions:
            schema = settings.workflow_task_queue.split(".")[0] + "_" + region.replace("-", "_")
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


@pytest_asyncio.fixture(scope="module", params=["sqlite"])
async def run(
    request: pytest.FixtureRequest,
    temporal_server: DevServer,
    client: Client,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"audit-{backend}")
    (folder / "gateway").mkdir()
    # A gateway of the run's own, as a torture run has: its whole ledger is this run's.
    with gateway_process(folder / "gateway") as gateway:
        async for made in _run(request, backend, folder, temporal_server, gateway, client):
            yield made


async def _run(
    request: pytest.FixtureRequest,
    backend: str,
    folder: Path,
    temporal_server: DevServer,
    gateway_server: GatewayServer,
    client: Client,
) -> AsyncIterator[Run]:
    postgres = request.getfixturevalue("postgres_database") if backend == "postgres" else None
    settings = _settings(temporal_server, gateway_server, backend, folder, postgres)
    _prepare(settings, backend, request)
    stores = open_stores(settings)
    log = ClientLog(folder / "client.jsonl", started=time.monotonic())
    (folder / "nemesis.jsonl").touch()
    app = create_app(settings)
    try:
        async with (
            Cluster(client, settings, stores, replication=True),
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://geosaga.test",
                headers=auth_headers(settings),
            ) as http,
            _gateway_http(gateway_server) as gateway_http,
        ):
            record = RunRecord(
                folder=folder,
                api_url="http://geosaga.test",
                gateway_url=gateway_server.url,
                gateway_key=gateway_server.key,
                stores={region: settings.database_url(region) for region in settings.regions},
                settings=settings,
            )
            made = Run(
                settings.workflow_task_queue.split(".")[0],
                folder,
                settings,
                stores,
                client,
                gateway_server,
                LoggedClient(http, log),
                LoggedClient(gateway_http, log, prefix="gateway:"),
                record,
            )
            await _workload(made)
            yield made
    finally:
        log.close()
        close_stores(stores)


async def _workload(run: Run) -> None:
    """Stock set through the API, the catalog read, then an order down every path."""
    levels = {
        "us-east": {"SKU-1": 10, "SKU-2": 1, "SKU-4": 1, "SKU-7": 2},
        "eu-west": {"SKU-2": 3},
        "ap-south": {"SKU-1": 5},
    }
    for region, skus in levels.items():
        for sku, on_hand in skus.items():
            path = f"/regions/{region}/stock/{sku}"
            answer = await run.api.call("stock", "PUT", path, body={"on_hand": on_hand})
            assert answer.status == 200, answer.answer
    assert (await run.api.call("orders", "GET", "/catalog")).status == 200

    local = await run.order("local", "us-east", [("SKU-1", 2)])
    split = await run.order("split", "eu-west", [("SKU-2", 4)])
    declined = await run.order("declined", "us-east", [("SKU-1", 1)], "tok_decline")
    short = await run.order("short", "ap-south", [("SKU-4", 5)])
    assert [local.status, split.status] == [SagaStatus.COMPLETED] * 2
    assert {a.region for a in split.allocations} == {"us-east", "eu-west"}
    assert (declined.reason, short.reason) == ("payment_declined", "out_of_stock")

    again = await run.post_order("local", "us-east", [("SKU-1", 2)])
    other = await run.post_order("local", "us-east", [("SKU-1", 3)])
    assert (again.status, other.status) == (202, 409)

    stuck = await run.stuck("stuck")
    await run.release_hold(stuck)
    assert (await run.resolve(stuck)).status == SagaStatus.COMPENSATED

    nowhere = httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}")
    async with nowhere:
        lost = await LoggedClient(nowhere, run.api.log).call(
            "orders",
            "POST",
            "/orders",
            body={"customer_id": "c", "home_region": "us-east", "lines": [], "payment_token": "t"},
            headers={"Idempotency-Key": run.key("lost")},
        )
    assert lost.status is None

    await _checkout(run)


async def _checkout(run: Run) -> None:
    """A cart filled in eu-west, ordered from us-east once the item got there."""
    cart = f"/carts/{run.prefix}-cart"
    put = await run.api.call(
        "carts", "PUT", f"{cart}/items/SKU-1", body={"quantity": 1}, headers={"X-Region": "eu-west"}
    )
    assert put.status == 200, put.answer
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        seen = await run.api.call("carts", "GET", cart, headers={"X-Region": "us-east"})
        if seen.status == 200 and seen.answer["items"]:
            break
        assert time.monotonic() < deadline, "the cart never reached us-east"
        await asyncio.sleep(0.2)
    checkout = await run.api.call(
        "carts",
        "POST",
        f"{cart}/checkout",
        body={"payment_token": "tok_ok"},
        headers={"X-Region": "us-east", "Idempotency-Key": run.key("cart")},
    )
    assert checkout.status == 202, checkout.answer
    assert (await outcome(run.client, run.key("cart"))).status == SagaStatus.COMPLETED


def _concerning(found: list[Violation], rule: str, *, orders: tuple[str, ...] = ()) -> None:
    """The rule fired, and nothing that fired is about anything else."""
    assert any(v.rule == rule for v in found), found
    for violation in found:
        assert set(orders) & set(violation.orders), violation


# A clean run -------------------------------------------------------------------------------


async def test_a_clean_run_has_no_violations(run: Run) -> None:
    deadline = time.monotonic() + _SETTLE_SECONDS
    report = await run.audit()
    while not report.ok and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # views and carts converge just after replication catches up
        report = await run.audit()

    assert report.violations == []
    assert report.outcomes == {
        "completed": 3,
        "compensated: payment_declined": 1,
        "compensated: out_of_stock": 1,
        "compensated: out_of_stock, resolved": 1,
        "answer lost, never started": 1,
    }
    assert report.requests["409"] == 1
    assert report.requests["lost"] == 1


# accepted ----------------------------------------------------------------------------------


async def test_an_accepted_order_without_a_saga_is_lost(run: Run) -> None:
    """The API answered 202 for an order Temporal never heard of (as a lost start would leave
    it; deleting a real saga takes the dev server half a minute, so the answer is logged)."""
    gone = run.key("gone")
    body = {
        "customer_id": "cust-1",
        "home_region": "us-east",
        "lines": [{"sku": "SKU-1", "quantity": 1}],
        "payment_token": "tok_ok",
    }

    async def answer_without_a_saga() -> None:
        log = run.api.log
        sent = log.send("orders", "POST", "/orders", {"Idempotency-Key": gone}, body)
        log.end(sent, 202, {"order_id": gone, "status": "accepted"})

    found = await run.new_violations(answer_without_a_saga)

    _concerning(found, "accepted", orders=(gone,))
    assert "answered 202 but Temporal has no saga" in found[0].detail


async def test_a_lost_answer_that_never_started_may_leave_no_effect(run: Run) -> None:
    lost = run.key("lost")

    async def leave_a_tombstone() -> None:
        with run.stores["eu-west"].transaction() as session:
            session.add(
                Reservation(
                    key=f"{workflow_id(lost)}/reserve/eu-west",
                    order_id=lost,
                    status=ReservationStatus.RELEASED,
                )
            )

    found = await run.new_violations(leave_a_tombstone)

    _concerning(found, "accepted", orders=(lost,))
    assert "never started" in found[0].detail
    assert "a released reservation in eu-west" in found[0].detail
    with run.stores["eu-west"].transaction() as session:
        session.delete(session.get(Reservation, f"{workflow_id(lost)}/reserve/eu-west"))


async def test_a_saga_that_has_not_ended_breaks_accepted_until_resolved(run: Run) -> None:
    before = set((await run.audit()).violations)

    waiting = await run.stuck("waiting")
    found = [v for v in (await run.audit()).violations if v not in before]

    _concerning(found, "accepted", orders=(waiting,))
    assert "needs_attention" in found[0].detail

    await run.release_hold(waiting)
    await run.resolve(waiting)
    assert [v for v in (await run.audit()).violations if v not in before] == []


# captured-once -----------------------------------------------------------------------------


async def test_an_extra_capture_at_the_gateway_breaks_captured_once(run: Run) -> None:
    twice = await run.order("twice", "us-east", [("SKU-1", 1)])

    async def capture_again() -> None:
        # A second hold under another region's reference of the order, captured.
        key = {"Idempotency-Key": f"{run.prefix}-extra"}
        async with _gateway_http(run.gateway) as http:
            made = await http.post(
                "/authorisations",
                json={
                    "reference": f"{workflow_id(twice.order_id)}/authorise/eu-west",
                    "token": "tok_ok",
                    "amount": str(twice.total),
                    "currency": "USD",
                },
                headers=key,
            )
            assert made.status_code == 201, made.text
            taken = await http.post(
                f"/authorisations/{made.json()['id']}/capture",
                json={"amount": str(twice.total)},
                headers={"Idempotency-Key": f"{run.prefix}-extra-capture"},
            )
            assert taken.status_code == 200, taken.text

    found = await run.new_violations(capture_again)

    _concerning(found, "captured-once", orders=(twice.order_id,))
    assert "2 captures" in found[0].detail


async def test_committed_lines_that_differ_from_the_allocations_break_captured_once(
    run: Run,
) -> None:
    split = run.key("split")
    key = f"{workflow_id(split)}/reserve/us-east"

    def commit_one_more(change: int) -> None:
        with run.stores["us-east"].transaction() as session:
            line = session.get(ReservationLine, (key, "SKU-2"))
            assert line is not None
            line.quantity += change
            session.add(line)

    async def more() -> None:
        commit_one_more(+1)

    found = await run.new_violations(more)
    commit_one_more(-1)

    _concerning(found, "captured-once", orders=(split,))
    assert "committed reservation lines" in found[0].detail
    assert found[0].where == ("us-east",)


# compensated-clean -------------------------------------------------------------------------


async def test_a_hold_left_open_or_captured_breaks_compensated_clean(run: Run) -> None:
    before = set((await run.audit()).violations)
    unreleased = await run.stuck("unreleased")

    # The operator resolves it without releasing the hold in the console.
    await run.resolve(unreleased)
    found = [v for v in (await run.audit()).violations if v not in before]

    _concerning(found, "compensated-clean", orders=(unreleased,))
    assert "resolved as released by hand" in found[0].detail

    # Then someone captures that hold.
    [hold] = run.gateway.authorisations(f"{workflow_id(unreleased)}/authorise/us-east")
    async with _gateway_http(run.gateway) as http:
        taken = await http.post(
            f"/authorisations/{hold['id']}/capture",
            json={"amount": hold["amount"]},
            headers={"Idempotency-Key": f"{run.prefix}-capture-compensated"},
        )
        assert taken.status_code == 200, taken.text
    found = [v for v in (await run.audit()).violations if v not in before]

    _concerning(found, "compensated-clean", orders=(unreleased,))
    assert [v.detail.split(":")[0] for v in found] == [f"compensated {unreleased} was captured"]


# conservation ------------------------------------------------------------------------------


def _shift_on_hand(store: Store, sku: str, change: int) -> None:
    with store.transaction() as session:
        row = session.get(Stock, sku)
        assert row is not None
        row.on_hand += change
        session.add(row)


async def test_a_stock_row_changed_by_hand_breaks_conservation(run: Run) -> None:
    async def lose_a_mug() -> None:
        _shift_on_hand(run.stores["us-east"], "SKU-1", -1)

    found = await run.new_violations(lose_a_mug)
    _shift_on_hand(run.stores["us-east"], "SKU-1", +1)

    conserved = [v for v in found if v.rule == "conservation"]
    assert [v.where for v in conserved] == [("us-east/SKU-1",)]
    assert "the last level set minus the commits after it gives" in conserved[0].detail
    # Its stock view elsewhere still says what the outbox said: that disagrees too.
    assert all("us-east/SKU-1" in v.where for v in found)


async def test_a_stock_level_nobody_asked_for_breaks_conservation(run: Run) -> None:
    async def set_by_hand() -> None:
        await asyncio.to_thread(inventory.set_on_hand, run.stores["us-east"], "SKU-7", 9)

    found = await run.new_violations(set_by_hand)

    assert [(v.rule, v.where) for v in found] == [("conservation", ("us-east/SKU-7",))]
    assert "set to 9" in found[0].detail


# no-reservation-after-end ------------------------------------------------------------------


async def test_a_reservation_left_held_for_a_compensated_order(run: Run) -> None:
    declined = run.key("declined")
    key = f"{workflow_id(declined)}/reserve/us-east"

    def set_status(status: ReservationStatus) -> None:
        with run.stores["us-east"].transaction() as session:
            reservation = session.get(Reservation, key)
            assert reservation is not None
            reservation.status = status
            session.add(reservation)

    async def hold_again() -> None:
        set_status(ReservationStatus.HELD)

    found = await run.new_violations(hold_again)
    set_status(ReservationStatus.RELEASED)

    held = [v for v in found if v.rule == "no-reservation-after-end"]
    assert [(v.orders, v.where) for v in held] == [((declined,), ("us-east",))]
    assert "the compensated order" in held[0].detail
    # The table's reserved count disagrees with the held lines: conservation says so too.
    assert {v.rule for v in found} <= {"no-reservation-after-end", "conservation"}


async def test_units_left_reserved_after_quiescence(run: Run) -> None:
    def reserve(change: int) -> None:
        with run.stores["ap-south"].transaction() as session:
            row = session.get(Stock, "SKU-1")
            assert row is not None
            row.reserved += change
            session.add(row)

    async def one_more() -> None:
        reserve(+1)

    found = await run.new_violations(one_more)
    reserve(-1)

    held = [v for v in found if v.rule == "no-reservation-after-end"]
    assert [(v.detail, v.where) for v in held] == [
        ("ap-south SKU-1: 1 reserved after quiescence", ("ap-south/SKU-1",))
    ]
    # No reservation holds it, and every view still says 0: conservation and convergence too.
    assert all("ap-south/SKU-1" in v.where for v in found)


# once --------------------------------------------------------------------------------------


async def test_an_effect_published_twice_breaks_once(run: Run) -> None:
    doubled = await run.order("doubled", "us-east", [("SKU-1", 1)])

    async def reserve_twice() -> None:
        with run.stores["us-east"].transaction() as session:
            event = StockReserved(
                region="us-east",
                order_id=doubled.order_id,
                lines=[StockLine(sku="SKU-1", quantity=1)],
            )
            outbox.record_event(session, "us-east", event, doubled.order_id)

    found = await run.new_violations(reserve_twice)

    assert [v.detail for v in found if v.rule == "once"] == [
        f"us-east published StockReserved 2 times for {doubled.order_id}"
    ]
    # The stray event also moves its order's views back to running, and the outbox now holds
    # more than the stock table: each rule that sees it says so.
    for violation in found:
        if violation.rule == "conservation":
            assert violation.where == ("us-east/SKU-1",)
        else:
            assert violation.rule in ("once", "convergence")
            assert violation.orders == (doubled.order_id,)


async def test_a_second_saga_for_one_key_breaks_once(run: Run) -> None:
    declined = run.key("declined")

    async def start_it_again() -> None:
        handle = run.client.get_workflow_handle(workflow_id(declined))
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        [order] = await run.client.data_converter.decode(started.input.payloads, [OrderInput])
        again = await run.client.start_workflow(
            OrderSaga.run,
            order,
            id=workflow_id(declined),
            task_queue=run.settings.workflow_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        await again.result()
        # Visibility lists the second run a moment later.
        query = f'WorkflowId = "{workflow_id(declined)}"'
        while len([w async for w in run.client.list_workflows(query)]) < 2:
            await asyncio.sleep(0.2)

    found = await run.new_violations(start_it_again)

    # The second run also ends its own way (its reservation was released by the first), which
    # the views, written by the first, disagree with: only this order is named either way.
    once = [v for v in found if v.rule == "once"]
    assert [(v.rule, v.orders) for v in once] == [("once", (declined,))]
    assert "2 saga runs" in once[0].detail
    assert {v.orders for v in found} == {(declined,)}


async def test_a_saga_nobody_asked_for_breaks_accepted(run: Run) -> None:
    stray = run.key("stray")

    async def start_one_behind_the_api() -> None:
        handle = run.client.get_workflow_handle(workflow_id(run.key("declined")))
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        [order] = await run.client.data_converter.decode(started.input.payloads, [OrderInput])
        saga = await run.client.start_workflow(
            OrderSaga.run,
            order.model_copy(update={"order_id": stray}),
            id=workflow_id(stray),
            task_queue=run.settings.workflow_task_queue,
        )
        assert (await saga.result()).reason == "payment_declined"
        while not [w async for w in run.client.list_workflows(f'WorkflowId = "{saga.id}"')]:
            await asyncio.sleep(0.2)  # visibility lists it a moment later

    found = await run.new_violations(start_one_behind_the_api)

    assert [(v.rule, v.orders) for v in found] == [("accepted", (stray,))]
    assert "no request in the client log asked for" in found[0].detail


async def test_the_same_body_refused_under_its_key_breaks_once(run: Run) -> None:
    body = {
        "customer_id": "cust-1",
        "home_region": "us-east",
        "lines": [{"sku": "SKU-1", "quantity": 2}],
        "payment_token": "tok_ok",
    }
    local = run.key("local")

    async def refuse_a_repeat() -> None:
        run.append_exchange(
            method="POST",
            path="/orders",
            headers={"Idempotency-Key": local},
            body=body,
            sent_at=10_000.0,
            answered_at=10_000.1,
            status=409,
            answer={"detail": "already used"},
        )

    kept = run.record.client_log.read_text()
    found = await run.new_violations(refuse_a_repeat)
    run.record.client_log.write_text(kept)

    assert [(v.rule, v.orders) for v in found] == [("once", (local,))]
    assert "answered 409 though the same body was accepted before" in found[0].detail


# convergence -------------------------------------------------------------------------------


async def test_an_order_view_that_disagrees_breaks_convergence(run: Run) -> None:
    split = run.key("split")

    def set_view(status: str) -> None:
        with run.stores["ap-south"].transaction() as session:
            view = session.get(OrderView, split)
            assert view is not None
            view.status = status
            session.add(view)

    async def disagree() -> None:
        set_view("running")

    found = await run.new_violations(disagree)
    set_view("completed")

    assert [(v.rule, v.orders, v.where) for v in found] == [
        ("convergence", (split,), ("ap-south",))
    ]


async def test_a_cart_that_differs_breaks_convergence(run: Run) -> None:
    customer = f"{run.prefix}-cart"
    op = {
        "dot": {"region": "ap-south", "counter": 99},
        "sku": "SKU-3",
        "kind": "set",
        "quantity": 1,
        "hlc": "000000000000001.0000000000.ap-south",
        "context": {},
    }
    row = CartOperation(
        customer_id=customer,
        dot_region="ap-south",
        dot_counter=99,
        sku="SKU-3",
        operation=json.dumps(op),
    )

    async def add_without_publishing() -> None:
        with run.stores["ap-south"].transaction() as session:
            session.add(row)

    found = await run.new_violations(add_without_publishing)
    with run.stores["ap-south"].transaction() as session:
        session.delete(session.get(CartOperation, (customer, "ap-south", 99)))

    assert [(v.rule, v.where) for v in found] == [("convergence", (f"cart:{customer}",))]


async def test_an_event_held_in_the_inbox_breaks_convergence(run: Run) -> None:
    held = InboxEvent(
        event_id=str(uuid.uuid4()),
        source_region="us-east",
        aggregate_type="order",
        aggregate_id="nobody",
        sequence=99,
        envelope="{}",
    )

    async def hold_one() -> None:
        with run.stores["eu-west"].transaction() as session:
            session.add(held)

    before = set((await run.audit()).violations)
    await hold_one()
    found = [v for v in await _judge_now(run) if v not in before]
    with run.stores["eu-west"].transaction() as session:
        session.delete(session.get(InboxEvent, held.event_id))

    assert {v.rule for v in found} == {"convergence"}
    assert [v.where for v in found if "1 events in its inbox" in v.detail] == [("eu-west",)]


async def _judge_now(run: Run) -> list[Violation]:
    """The audit without waiting for the inbox to drain (it never would here)."""
    return (await audit(run.record)).violations


async def test_dead_letters_must_be_explained_by_a_skew_and_redriven(
    run: Run, tmp_path: Path
) -> None:
    before = set((await run.audit()).violations)
    # us-east's clock two minutes behind: every event from elsewhere looks too far ahead.
    (tmp_path / "us-east").write_text("-120000")
    use_skew(tmp_path)
    try:
        changed = await run.api.call(
            "stock", "PUT", "/regions/eu-west/stock/SKU-3", body={"on_hand": 4}
        )
        assert changed.status == 200
        letter = await _dead_letter(run, "us-east")
    finally:
        use_skew(None)
    found = [v for v in await _judge_now(run) if v not in before]

    assert {v.rule for v in found} == {"convergence"}
    assert sorted(v.where for v in found) == [("us-east",), ("us-east", "eu-west/SKU-3")]
    assert any(f"still holds dead letter {letter}" in v.detail for v in found)

    path = f"/regions/us-east/dead-letters/{letter}/redrive"
    redriven = await run.api.call("operator", "POST", path)
    assert redriven.status == 200, redriven.answer
    found = [v for v in await _judge_now(run) if v not in before]

    assert [(v.rule, v.where) for v in found] == [("convergence", ("us-east",))]
    assert "no clock skew beyond the bound explains it" in found[0].detail

    run.append_fault(
        kind="clock-skew-beyond",
        target="us-east",
        started_at=1.0,
        ended_at=2.0,
        params={"offset_ms": -120_000},
    )
    assert [v for v in await _judge_now(run) if v not in before] == []


async def _dead_letter(run: Run, region: str) -> str:
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        listed = await run.api.call("operator", "GET", f"/regions/{region}/dead-letters")
        if listed.status == 200 and listed.answer:
            [letter] = listed.answer
            assert "ahead" in letter["error"], letter
            return str(letter["event_id"])
        assert time.monotonic() < deadline, "nothing was dead-lettered"
        await asyncio.sleep(0.2)


async def test_a_dead_letter_gone_missing_breaks_convergence(run: Run) -> None:
    def count(change: int) -> None:
        with run.stores["ap-south"].transaction() as session:
            source = session.get(ReplicationSource, "eu-west")
            assert source is not None
            source.dead_lettered += change
            session.add(source)

    async def one_more() -> None:
        count(+1)

    found = await run.new_violations(one_more)
    count(-1)

    assert [(v.rule, v.where) for v in found] == [("convergence", ("eu-west->ap-south",))]


# no-5xx ------------------------------------------------------------------------------------


async def test_a_5xx_breaks_no_5xx_unless_a_503_while_temporal_was_down(run: Run) -> None:
    local = run.key("local")
    log = run.record.client_log
    kept = log.read_text()

    async def answer(status: int, at: float) -> None:
        run.append_exchange(
            method="POST",
            path=f"/orders/{local}/cancel",
            sent_at=at,
            answered_at=at + 0.5,
            status=status,
            answer={"detail": "Internal Server Error"},
        )

    found = await run.new_violations(lambda: answer(500, 20_000.0))

    assert [(v.rule, v.orders) for v in found] == [("no-5xx", (local,))]
    assert "got 500" in found[0].detail

    log.write_text(kept)
    run.append_fault(
        kind="temporal-kill", target="temporal", started_at=30_000.0, ended_at=30_004.0
    )
    assert await run.new_violations(lambda: answer(503, 30_006.0)) == []
    found = await run.new_violations(lambda: answer(503, 30_010.0))

    assert [(v.rule, v.orders) for v in found] == [("no-5xx", (local,))]
    log.write_text(kept)
