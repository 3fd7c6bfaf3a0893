"""`geosaga bench`: real sagas over HTTP against the floor, in one run, on one stack.

The floor is a workflow of the saga's shape whose activities do nothing (workflows/floor.py),
run on the same server, task queues and workers: what the sagas cost beyond it is geosaga's.
One module, though long: the phases of a run share one stack, one client and one clock, and
their results are compared with each other.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import aiohttp
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from foundation.settings import Settings
from geosaga.bench.procs import cpu_seconds
from orders.sagas import fingerprint, order_input, start
from orders.schemas import OrderRequest
from regions.values import SagaStatus
from workflows.contract import FLOOR_WORKFLOW, local_order_shape, workflow_id
from workflows.order_saga import OrderSaga

T = TypeVar("T")

BENCH_SKU = "SKU-5"
# A lag sample costs the API CPU that the sagas under load are charged: one every 2 s.
_LAG_EVERY = 2.0
_POST_ATTEMPTS = 2
# Below uvicorn's 5 s keep-alive, so the pool never sends on a connection the server closes.
_KEEPALIVE_SECONDS = 3.0
BENCH_STOCK = 1_000_000


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Percentiles:
        ms = sorted(s * 1000 for s in seconds)
        if not ms:
            return cls(0.0, 0.0, 0.0)
        cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
        return cls(round(cuts[49], 1), round(cuts[94], 1), round(cuts[98], 1))


@dataclass(frozen=True)
class Phase:
    runs: int
    seconds: float
    per_second: float
    latency: Percentiles
    submission: Percentiles | None = None


@dataclass(frozen=True)
class Step:
    name: str
    count: int
    schedule_to_start: Percentiles
    run: Percentiles


@dataclass
class Result:
    orders: int
    concurrency: int
    floor_idle: Phase
    saga_idle: Phase
    floor_load: Phase
    saga_load: Phase
    raw_start: Percentiles
    post_orders: Percentiles
    saga_steps: list[Step] = field(default_factory=list)
    floor_steps: list[Step] = field(default_factory=list)
    # CPU milliseconds per workflow under load, by process: {"floor": {...}, "saga": {...}}.
    cpu_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # Under saga load, sampled every 2 s: the oldest event any region had yet to apply
    # from another (`GET /regions/{region}/replication`), in ms. What batching costs in lag.
    replication_lag: Percentiles | None = None

    @property
    def ratios(self) -> dict[str, float]:
        """geosaga over the floor (throughput: higher is better; latency: lower is better)."""
        return {
            "throughput (saga / floor)": _ratio(
                self.saga_load.per_second, self.floor_load.per_second
            ),
            "idle p50 (saga / floor)": _ratio(
                self.saga_idle.latency.p50, self.floor_idle.latency.p50
            ),
            "POST /orders p99 / raw start p99": _ratio(self.post_orders.p99, self.raw_start.p99),
        }

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratios": self.ratios}


def http_session(settings: Settings, api_key: str) -> aiohttp.ClientSession:
    """The bench's HTTP client: aiohttp, the client that adds least of its own to a timed POST
    (BENCHMARKS.md)."""
    return aiohttp.ClientSession(
        base_url=settings.api_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(keepalive_timeout=_KEEPALIVE_SECONDS),
    )


class Bench:
    def __init__(
        self,
        settings: Settings,
        client: Client,
        http: aiohttp.ClientSession,
        *,
        processes: dict[int, str] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.http = http
        # The stack's processes, whose CPU time is charged to each phase under load.
        self.processes = processes or {}
        self.saga_ids: list[str] = []
        self.floor_ids: list[str] = []

    async def prepare(self) -> None:
        """Plenty of the bench's SKU everywhere, so every order completes locally."""
        for region in self.settings.regions:
            path = f"/regions/{region}/stock/{BENCH_SKU}"
            async with self.http.put(path, json={"on_hand": BENCH_STOCK}) as response:
                response.raise_for_status()

    def _home(self, n: int) -> str:
        return self.settings.regions[n % len(self.settings.regions)]

    async def floor(self, n: int) -> float:
        started = time.perf_counter()
        wid = f"floor-{uuid.uuid4().hex[:12]}"
        await self.client.execute_workflow(
            FLOOR_WORKFLOW,
            local_order_shape(self.settings.task_queue(self._home(n))),
            id=wid,
            task_queue=self.settings.workflow_task_queue,
        )
        self.floor_ids.append(wid)
        return time.perf_counter() - started

    def _order(self, n: int, home: str | None = None) -> dict[str, Any]:
        return {
            "customer_id": f"bench-{n % 50}",
            "home_region": home or self._home(n),
            "lines": [{"sku": BENCH_SKU, "quantity": 1}],
            "payment_token": "tok_ok",
        }

    async def saga(self, n: int, home: str | None = None) -> tuple[float, float]:
        """(time to 202, time to the saga's end) of one order through the API."""
        key = f"bench-{uuid.uuid4().hex[:16]}"
        started = time.perf_counter()
        await self._post_order(self._order(n, home), key)
        accepted = time.perf_counter()
        handle = self.client.get_workflow_handle_for(OrderSaga.run, workflow_id(key))
        state = await handle.result()
        if state.status != SagaStatus.COMPLETED:
            raise RuntimeError(f"bench order {key} ended {state.status}: {state.message}")
        self.saga_ids.append(workflow_id(key))
        return accepted - started, time.perf_counter() - started

    async def _post_order(self, order: dict[str, Any], key: str) -> None:
        """Posts once more, with the same key, if the connection drops before an answer: the
        key makes that safe, and a pooled connection the server has just closed does it."""
        for attempt in range(_POST_ATTEMPTS):
            try:
                async with self.http.post(
                    "/orders", json=order, headers={"Idempotency-Key": key}
                ) as response:
                    response.raise_for_status()
                    await response.read()
                return
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt == _POST_ATTEMPTS - 1:
                    raise

    async def raw_start(self, n: int) -> float:
        """The API's start call alone: the same function `POST /orders` calls."""
        key = f"bench-raw-{uuid.uuid4().hex[:12]}"
        request = OrderRequest.model_validate(self._order(n))
        order = order_input(self.settings, key, request)
        digest = fingerprint(request)
        started = time.perf_counter()
        await start(self.client, self.settings, order, digest)
        elapsed = time.perf_counter() - started
        await self.client.get_workflow_handle(workflow_id(key)).result()
        return elapsed

    async def post_only(self, n: int) -> float:
        submit, _ = await self.saga(n)
        return submit

    async def replication_lag(self) -> float:
        """Seconds: the oldest event some region has not applied yet, over every pair."""
        lag = 0.0
        for region in self.settings.regions:
            async with self.http.get(f"/regions/{region}/replication") as response:
                response.raise_for_status()
                status = await response.json()
            lag = max([lag, *(source["lag_seconds"] for source in status["sources"])])
        return lag

    async def sample_lag(self, into: list[float]) -> None:
        """Appends the replication lag every `_LAG_EVERY` seconds until cancelled."""
        while True:
            into.append(await self.replication_lag())
            await asyncio.sleep(_LAG_EVERY)


async def run(
    bench: Bench, *, orders: int, concurrency: int, idle: int, starts: int, console: Console
) -> Result:
    await bench.prepare()
    for n in range(3):  # warm caches, connections and the sandbox
        await bench.floor(n)
        await bench.saga(n)
    bench.saga_ids.clear()
    bench.floor_ids.clear()
    floor_idle = await _sequential(bench.floor, idle)
    saga_idle_pairs = [await bench.saga(n) for n in range(idle)]
    saga_idle = _phase([p[1] for p in saga_idle_pairs], sum(p[1] for p in saga_idle_pairs))
    raw: list[float] = []
    posted: list[float] = []
    # Interleaved, so both see the same server state, and in a random order within each pair:
    # a fixed order meets the relays' cadence at the same point of it every time.
    order = random.Random(starts)
    for n in range(starts):
        pair: list[tuple[list[float], Callable[[int], Awaitable[float]]]] = [
            (raw, bench.raw_start),
            (posted, bench.post_only),
        ]
        order.shuffle(pair)
        for latencies, action in pair:
            latencies.append(await action(n))
    cpu_before = cpu_seconds(bench.processes)
    floor_load = await _concurrent(bench.floor, orders, concurrency, "floor", console)
    cpu_between = cpu_seconds(bench.processes)
    lags: list[float] = []
    sampling = asyncio.create_task(bench.sample_lag(lags))
    try:
        saga_pairs, seconds = await _timed(
            concurrently(bench.saga, orders, concurrency, "sagas", console)
        )
    finally:
        sampling.cancel()
    cpu_after = cpu_seconds(bench.processes)
    saga_load = Phase(
        runs=orders,
        seconds=round(seconds, 2),
        per_second=round(orders / seconds, 2),
        latency=Percentiles.of([p[1] for p in saga_pairs]),
        submission=Percentiles.of([p[0] for p in saga_pairs]),
    )
    return Result(
        orders=orders,
        concurrency=concurrency,
        floor_idle=floor_idle,
        saga_idle=saga_idle,
        floor_load=floor_load,
        saga_load=saga_load,
        raw_start=Percentiles.of(raw),
        post_orders=Percentiles.of(posted),
        saga_steps=await step_timings(bench.client, bench.saga_ids[-50:]),
        floor_steps=await step_timings(bench.client, bench.floor_ids[-50:]),
        cpu_ms={
            "floor": per_run(cpu_before, cpu_between, orders),
            "saga": per_run(cpu_between, cpu_after, orders),
        },
        replication_lag=Percentiles.of(lags),
    )


def per_run(before: dict[str, float], after: dict[str, float], runs: int) -> dict[str, float]:
    """Milliseconds of CPU each process spent per run, and their total."""
    spent = {name: round((after[name] - before.get(name, 0.0)) / runs * 1000, 1) for name in after}
    return {**dict(sorted(spent.items())), "total": round(sum(spent.values()), 1)}


async def _sequential(action: Callable[[int], Awaitable[float]], count: int) -> Phase:
    latencies = [await action(n) for n in range(count)]
    return _phase(latencies, sum(latencies))


async def _concurrent(
    action: Callable[[int], Awaitable[float]],
    count: int,
    concurrency: int,
    label: str,
    console: Console,
) -> Phase:
    latencies, seconds = await _timed(concurrently(action, count, concurrency, label, console))
    return _phase(latencies, seconds)


async def concurrently(
    action: Callable[[int], Awaitable[T]],
    count: int,
    concurrency: int,
    label: str,
    console: Console,
) -> list[T]:
    gate = asyncio.Semaphore(concurrency)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=count)

        async def one(n: int) -> T:
            async with gate:
                result = await action(n)
            progress.advance(task)
            return result

        return await asyncio.gather(*(one(n) for n in range(count)))


async def _timed(work: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await work
    return result, time.perf_counter() - started


def _phase(latencies: Sequence[float], seconds: float) -> Phase:
    return Phase(
        runs=len(latencies),
        seconds=round(seconds, 2),
        per_second=round(len(latencies) / seconds, 2) if seconds else 0.0,
        latency=Percentiles.of(latencies),
    )


async def step_timings(client: Client, workflow_ids: Sequence[str]) -> list[Step]:
    """Schedule-to-start and run time per activity type and for workflow tasks, from history."""
    waits: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    for wid in workflow_ids:
        history = await client.get_workflow_handle(wid).fetch_history()
        at = {e.event_id: e.event_time.ToDatetime() for e in history.events}
        names: dict[int, str] = {}
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                scheduled = e.activity_task_started_event_attributes.scheduled_event_id
                waits[names[scheduled]].append((at[e.event_id] - at[scheduled]).total_seconds())
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = e.activity_task_completed_event_attributes
                name = names[attrs.scheduled_event_id]
                runs[name].append((at[e.event_id] - at[attrs.started_event_id]).total_seconds())
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                scheduled = e.workflow_task_started_event_attributes.scheduled_event_id
                waits["workflow task"].append((at[e.event_id] - at[scheduled]).total_seconds())
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                started = e.workflow_task_completed_event_attributes.started_event_id
                runs["workflow task"].append((at[e.event_id] - at[started]).total_seconds())
    return [
        Step(name, len(runs[name]), Percentiles.of(waits[name]), Percentiles.of(runs[name]))
        for name in sorted(waits, key=lambda n: (n != "workflow task", n))
    ]


def report(result: Result, console: Console, title: str = "geosaga bench") -> None:
    table = Table(title=f"{title}: {result.orders} orders, {result.concurrency} at a time")
    for column in ("", "runs", "per second", "p50 ms", "p95 ms", "p99 ms", "202 p50/p99 ms"):
        table.add_column(column)
    for name, phase in (
        ("floor, idle", result.floor_idle),
        ("saga, idle", result.saga_idle),
        ("floor, load", result.floor_load),
        ("saga, load", result.saga_load),
    ):
        submission = phase.submission
        table.add_row(
            name,
            str(phase.runs),
            f"{phase.per_second:.1f}",
            f"{phase.latency.p50:.0f}",
            f"{phase.latency.p95:.0f}",
            f"{phase.latency.p99:.0f}",
            f"{submission.p50:.0f}/{submission.p99:.0f}" if submission else "",
        )
    console.print(table)
    starts = Table(title="starting a saga")
    for column in ("", "p50 ms", "p95 ms", "p99 ms"):
        starts.add_column(column)
    for name, pct in (
        ("raw client.start_workflow", result.raw_start),
        ("POST /orders", result.post_orders),
    ):
        starts.add_row(name, f"{pct.p50:.1f}", f"{pct.p95:.1f}", f"{pct.p99:.1f}")
    console.print(starts)
    steps = Table(title="per step (saga | floor), from history: schedule-to-start / run, p50 ms")
    for column in ("step", "saga wait", "saga run", "floor wait", "floor run"):
        steps.add_column(column)
    floor = {s.name: s for s in result.floor_steps}
    for step in result.saga_steps:
        twin = floor.get(step.name) or floor.get("noop")
        steps.add_row(
            step.name,
            f"{step.schedule_to_start.p50:.1f}",
            f"{step.run.p50:.1f}",
            f"{twin.schedule_to_start.p50:.1f}" if twin else "",
            f"{twin.run.p50:.1f}" if twin else "",
        )
    console.print(steps)
    if result.cpu_ms.get("saga"):
        cpu = Table(title="CPU per workflow under load, ms (user + system, from /proc)")
        for column in ("process", "floor", "saga"):
            cpu.add_column(column)
        floor_cpu = result.cpu_ms["floor"]
        for name, ms in result.cpu_ms["saga"].items():
            cpu.add_row(name, f"{floor_cpu.get(name, 0.0):.1f}", f"{ms:.1f}")
        console.print(cpu)
    if result.replication_lag is not None:
        lag = result.replication_lag
        console.print(
            "replication lag under saga load (oldest unapplied event, worst pair, every 2 s):"
            f" p50 {lag.p50:.0f} ms, p95 {lag.p95:.0f} ms, p99 {lag.p99:.0f} ms"
        )
    ratios = Table(title="geosaga against the floor")
    ratios.add_column("ratio")
    ratios.add_column("value")
    for name, value in result.ratios.items():
        ratios.add_row(name, f"{value:.2f}")
    console.print(ratios)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0
