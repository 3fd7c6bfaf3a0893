"""Wiring for `geosaga bench`: which stacks to measure, and the clients to measure them with."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from foundation.security import api_keys
from foundation.settings import Settings
from foundation.telemetry import tracer_provider
from foundation.temporal import connect
from geosaga.bench import heal as bench_heal
from geosaga.bench import saga as bench
from geosaga.bench import scale as bench_scale
from geosaga.bench.procs import stack_processes
from geosaga.bench.stack import STOCK, spawned


@dataclass(frozen=True)
class Sizes:
    orders: int
    concurrency: int
    idle: int
    starts: int
    scale: list[int] = field(default_factory=list)
    heals: int = 0
    soak_warmup: int = 3000


async def bench_all(
    settings: Settings, sizes: Sizes, spawn: bool, compare_stock: bool, console: Console
) -> dict[str, Any]:
    """Measures the tuned stack (and, asked to, the stock one first); returns the JSON.

    The scale runs and the soak, when asked for, run on the tuned stack only.
    """
    profiles: list[tuple[str, dict[str, str]]] = []
    if spawn and compare_stock:
        profiles.append(("stock", STOCK))
    profiles.append(("tuned" if spawn else "configured", {}))
    results: dict[str, Any] = {}
    for name, overrides in profiles:
        async with AsyncExitStack() as stack:
            target = await stack.enter_async_context(spawned(overrides)) if spawn else settings
            console.print(
                f"[bold]{name}[/] stack at {target.temporal_address}, API {target.api_url}"
            )
            # Traced as the API's client is, so a bare start does what the API's does.
            client = await connect(target, tracer_provider=tracer_provider(target, "bench"))
            http = await stack.enter_async_context(bench.http_session(target, api_keys(target)[0]))
            data_dir = target.data_dir if spawn else None
            measured = bench.Bench(target, client, http, processes=stack_processes(data_dir))
            result = await bench.run(
                measured,
                orders=sizes.orders,
                concurrency=sizes.concurrency,
                idle=sizes.idle,
                starts=sizes.starts,
                console=console,
            )
            bench.report(result, console, title=name)
            results[name] = result.as_json()
            if sizes.heals and spawn and name != "stock":
                region = target.regions[-1]
                [pid] = [p for p, n in measured.processes.items() if n == f"worker {region}"]
                healed = await bench_heal.heals(measured, sizes.heals, pid, region)
                bench_heal.report(healed, console)
                results["heals"] = {
                    **asdict(healed),
                    "median seconds": healed.median,
                    "longest seconds": healed.longest,
                }
            if sizes.scale and name != "stock":
                scaled = await bench_scale.scale(
                    measured,
                    sizes.scale,
                    sizes.concurrency,
                    console,
                    data_dir=data_dir,
                    warmup=sizes.soak_warmup,
                )
                bench_scale.report(scaled, console)
                results["scale"] = {
                    "runs": [asdict(run) for run in scaled.runs],
                    "largest / smallest (throughput)": scaled.ratio,
                    "memory": [
                        {**asdict(m), "growth": m.growth, "warm_growth": m.warm_growth}
                        for m in scaled.memory
                    ],
                }
    if "stock" in results:
        stock, tuned = results["stock"]["floor_load"], results["tuned"]["floor_load"]
        speedup = round(tuned["per_second"] / stock["per_second"], 2)
        results["tuned floor / stock floor (throughput)"] = speedup
        console.print(f"tuned floor throughput / stock floor throughput: [bold]{speedup}[/]")
    return results
