"""`geosaga bench --spawn --against KEY=VALUE`: two stacks at once, one with the settings given,
each under the same saga load at the same time.

Machines of the bench's kind drift from one minute to the next by more than a tuning change
moves, so runs taken one after another cannot tell the two apart. Two stacks loaded side by
side share the machine's drift and contend for it alike; the ratio of their CPU per saga says
what the settings did, once it is outside the spread of two equal stacks (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from foundation.security import api_keys
from foundation.temporal import connect
from geosaga.bench.procs import cpu_seconds, stack_processes
from geosaga.bench.saga import Bench, concurrently, http_session, per_run
from geosaga.bench.stack import spawned


@dataclass(frozen=True)
class Side:
    overrides: dict[str, str]
    per_second: float
    # CPU (user + system) per saga by process of the side's stack, and their total, in ms.
    cpu_ms: dict[str, float]


@dataclass(frozen=True)
class AB:
    orders: int
    concurrency: int
    a: Side
    b: Side

    @property
    def ratios(self) -> dict[str, float]:
        a, b = self.a, self.b
        return {
            "throughput (B / A)": round(b.per_second / a.per_second, 3),
            "CPU per saga (B / A)": round(b.cpu_ms["total"] / a.cpu_ms["total"], 3),
        }

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratios": self.ratios}


async def against(overrides: dict[str, str], orders: int, concurrency: int) -> AB:
    """Stack A with the defaults, stack B with `overrides`; `orders` sagas on each at once."""
    async with AsyncExitStack() as stack:
        a = await _ready(stack, {})
        b = await _ready(stack, overrides)
        (a_rate, a_cpu), (b_rate, b_cpu) = await asyncio.gather(
            _load(a, orders, concurrency), _load(b, orders, concurrency)
        )
    return AB(orders, concurrency, Side({}, a_rate, a_cpu), Side(overrides, b_rate, b_cpu))


async def _ready(stack: AsyncExitStack, overrides: dict[str, str]) -> Bench:
    target = await stack.enter_async_context(spawned(overrides))
    client = await connect(target)
    http = await stack.enter_async_context(http_session(target, api_keys(target)[0]))
    bench = Bench(target, client, http, processes=stack_processes(target.data_dir))
    await bench.prepare()
    for n in range(3):  # warm caches, connections and the sandbox
        await bench.saga(n)
    return bench


async def _load(bench: Bench, orders: int, concurrency: int) -> tuple[float, dict[str, float]]:
    before = cpu_seconds(bench.processes)
    started = time.perf_counter()
    await concurrently(bench.saga, orders, concurrency, "sagas", Console(quiet=True))
    seconds = time.perf_counter() - started
    return round(orders / seconds, 2), per_run(before, cpu_seconds(bench.processes), orders)


def report(result: AB, console: Console) -> None:
    table = Table(
        title=f"A against B: {result.orders} sagas on each, {result.concurrency} at a time, "
        "both at once; CPU per saga, ms"
    )
    table.add_column("process")
    table.add_column("A (defaults)")
    table.add_column("B (" + ", ".join(f"{k}={v}" for k, v in result.b.overrides.items()) + ")")
    for name, ms in result.a.cpu_ms.items():
        table.add_row(name, f"{ms:.1f}", f"{result.b.cpu_ms.get(name, 0.0):.1f}")
    table.add_row("sagas per second", f"{result.a.per_second:.2f}", f"{result.b.per_second:.2f}")
    console.print(table)
    for name, value in result.ratios.items():
        console.print(f"{name}: [bold]{value:.3f}[/]")
