"""`geosaga bench --spawn --heals N`: how long a region takes to catch up after a partition.

The last region's worker is frozen (SIGSTOP) while orders run in the other regions, so their
events pile up for it; then it is resumed (SIGCONT), and the time until it has applied every
one of them is taken from its replication status, polled every 20 ms.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from dataclasses import dataclass

from rich.console import Console

from geosaga.bench.saga import Bench

_ORDERS_PER_HEAL = 10
_POLL_SECONDS = 0.02
_GIVE_UP_SECONDS = 120


@dataclass(frozen=True)
class Heals:
    region: str
    backlog_events: list[int]
    seconds: list[float]

    @property
    def median(self) -> float:
        return round(statistics.median(self.seconds), 2)

    @property
    def longest(self) -> float:
        return round(max(self.seconds), 2)


async def heals(bench: Bench, count: int, worker_pid: int, region: str) -> Heals:
    others = [r for r in bench.settings.regions if r != region]
    backlog, seconds = [], []
    for _ in range(count):
        os.kill(worker_pid, signal.SIGSTOP)
        try:
            for i in range(_ORDERS_PER_HEAL):
                await bench.saga(i, home=others[i % len(others)])
            backlog.append(await _lag(bench, region))
        finally:
            os.kill(worker_pid, signal.SIGCONT)
        seconds.append(round(await _caught_up(bench, region), 3))
        await asyncio.sleep(1)  # let the relays settle before the next cut
    return Heals(region=region, backlog_events=backlog, seconds=seconds)


async def _caught_up(bench: Bench, region: str) -> float:
    resumed = time.perf_counter()
    for _ in range(int(_GIVE_UP_SECONDS / _POLL_SECONDS)):
        if not await _lag(bench, region):
            return time.perf_counter() - resumed
        await asyncio.sleep(_POLL_SECONDS)
    raise TimeoutError(f"{region} did not catch up within {_GIVE_UP_SECONDS} s")


async def _lag(bench: Bench, region: str) -> int:
    async with bench.http.get(f"/regions/{region}/replication") as response:
        response.raise_for_status()
        body = await response.json()
    return sum(int(source["lag_events"]) for source in body["sources"])


def report(result: Heals, console: Console) -> None:
    console.print(
        f"{result.region} caught up after a partition in [bold]{result.median} s[/] "
        f"(median of {len(result.seconds)}, longest {result.longest} s; "
        f"backlogs of {', '.join(map(str, result.backlog_events))} events)"
    )
