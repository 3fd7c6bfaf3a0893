"""Wiring for `geosaga bench`: which stacks to measure, and the clients to measure them with."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
from rich.console import Console

from geosaga import bench
from geosaga.bench_stack import STOCK, spawned
from geosaga.security import api_keys
from geosaga.settings import Settings
from geosaga.temporal import connect


async def bench_all(
    settings: Settings,
    orders: int,
    concurrency: int,
    idle: int,
    spawn: bool,
    compare_stock: bool,
    console: Console,
) -> dict[str, Any]:
    """Measures the tuned stack (and, asked to, the stock one first); returns the JSON."""
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
            client = await connect(target)
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=target.api_url,
                    headers={"Authorization": f"Bearer {api_keys(target)[0]}"},
                    timeout=60,
                )
            )
            result = await bench.run(
                bench.Bench(target, client, http),
                orders=orders,
                concurrency=concurrency,
                idle=idle,
                console=console,
            )
            bench.report(result, console, title=name)
            results[name] = result.as_json()
    if "stock" in results:
        stock, tuned = results["stock"]["floor_load"], results["tuned"]["floor_load"]
        speedup = round(tuned["per_second"] / stock["per_second"], 2)
        results["tuned floor / stock floor (throughput)"] = speedup
        console.print(f"tuned floor throughput / stock floor throughput: [bold]{speedup}[/]")
    return results
