"""`geosaga bench --scale`: throughput at growing order counts, and the processes' memory.

While the runs go on, the resident set size (RSS) of the API and of every region worker is
read from /proc every few seconds (Linux), so a leak shows as growth across the longest run.
Workers grow while they warm up (workflow cache, statement caches, the allocator's arenas),
so the soak's growth is taken from the minute after its first `--soak-warmup` orders; the
growth from its first minute is reported beside it.
Each run also records the stack's CPU per order and the share of the machine's time its
hypervisor took (steal): a run that sped up or slowed down says which of the two moved.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from geosaga.bench.procs import TEMPORAL, cpu_seconds, machine_times, rss_mb, stack_processes
from geosaga.bench.saga import Bench, Percentiles, concurrently

_SAMPLE_SECONDS = 5.0


@dataclass(frozen=True)
class ScaleRun:
    orders: int
    seconds: float
    per_second: float
    latency: Percentiles
    # CPU (user + system) of every process of the stack per order, in ms.
    cpu_ms_per_order: float
    # The machine's time taken by its hypervisor during the run (0.05: 5 %).
    steal: float


@dataclass(frozen=True)
class Memory:
    process: str
    first_mb: float
    peak_mb: float
    last_mb: float
    minutes: float
    # The minute after the warm-up (None when the run was too short to have one).
    warm_mb: float | None = None
    warm_minutes: float | None = None

    @property
    def growth(self) -> float:
        """Last minute's RSS over the first minute's, as a fraction (0.05 = 5 % more)."""
        return round(self.last_mb / self.first_mb - 1, 3) if self.first_mb else 0.0

    @property
    def warm_growth(self) -> float | None:
        """Last minute's RSS over the minute's after the warm-up: the soak's growth."""
        return round(self.last_mb / self.warm_mb - 1, 3) if self.warm_mb else None


@dataclass
class Scale:
    runs: list[ScaleRun]
    memory: list[Memory]

    @property
    def ratio(self) -> float:
        """Throughput of the largest run over the smallest (1.0: no slowdown with size)."""
        first, last = self.runs[0].per_second, self.runs[-1].per_second
        return round(last / first, 2) if first else 0.0


class MemorySampler:
    """Samples RSS per process until stopped; summarises the first minute, and the minute
    after `warm()` was called, against the last."""

    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.started = time.monotonic()
        self.warm_at: float | None = None

    def warm(self) -> None:
        """The warm-up is over: the soak's baseline is the minute from now."""
        self.warm_at = time.monotonic() - self.started
        self.sample()

    def sample(self) -> None:
        for pid, name in self.processes.items():
            mb = rss_mb(pid)
            if mb is not None:
                self.samples[name].append((time.monotonic() - self.started, mb))

    async def run(self) -> None:
        self.started = time.monotonic()
        while True:
            self.sample()
            await asyncio.sleep(_SAMPLE_SECONDS)

    def summary(self) -> list[Memory]:
        memory = []
        for name, samples in sorted(self.samples.items()):
            end = samples[-1][0]
            first = [mb for t, mb in samples if t <= 60] or [samples[0][1]]
            last = [mb for t, mb in samples if t >= end - 60] or [samples[-1][1]]
            warm_mb = warm_minutes = None
            if self.warm_at is not None:
                at = self.warm_at
                warm = [mb for t, mb in samples if at <= t <= at + 60]
                if warm:
                    warm_mb, warm_minutes = round(max(warm), 1), round((end - at) / 60, 1)
            memory.append(
                Memory(
                    process=name,
                    first_mb=round(max(first), 1),
                    peak_mb=round(max(mb for _, mb in samples), 1),
                    last_mb=round(max(last), 1),
                    minutes=round(end / 60, 1),
                    warm_mb=warm_mb,
                    warm_minutes=warm_minutes,
                )
            )
        return memory


async def scale(
    bench: Bench,
    counts: Sequence[int],
    concurrency: int,
    console: Console,
    *,
    data_dir: Path | None,
    warmup: int = 0,
) -> Scale:
    """Runs each count of orders in turn; memory is sampled over the last (the soak), whose
    baseline is the minute after its first `warmup` orders ended (when it has more)."""
    runs = []
    processes = stack_processes(data_dir)
    sampler = MemorySampler({pid: name for pid, name in processes.items() if name != TEMPORAL})
    sampling: asyncio.Task[None] | None = None
    try:
        for n, count in enumerate(counts):
            soak = n == len(counts) - 1
            if soak:
                sampling = asyncio.create_task(sampler.run())
            action = _warming(bench, sampler, warmup) if soak and 0 < warmup < count else bench.saga
            cpu_before, machine_before = cpu_seconds(processes), machine_times()
            started = time.perf_counter()
            pairs = await concurrently(action, count, concurrency, f"{count} orders", console)
            seconds = time.perf_counter() - started
            cpu_after, machine_after = cpu_seconds(processes), machine_times()
            used = sum(cpu_after.values()) - sum(cpu_before.values())
            ticks = machine_after[0] - machine_before[0]
            runs.append(
                ScaleRun(
                    orders=count,
                    seconds=round(seconds, 1),
                    per_second=round(count / seconds, 2),
                    latency=Percentiles.of([p[1] for p in pairs]),
                    cpu_ms_per_order=round(used * 1000 / count, 1),
                    steal=round((machine_after[1] - machine_before[1]) / ticks, 3)
                    if ticks
                    else 0.0,
                )
            )
    finally:
        if sampling is not None:
            sampling.cancel()
    return Scale(runs=runs, memory=sampler.summary())


def _warming(
    bench: Bench, sampler: MemorySampler, warmup: int
) -> Callable[[int], Awaitable[tuple[float, float]]]:
    """`bench.saga`, telling the sampler when the `warmup`-th order has ended."""
    ended = 0

    async def saga(n: int) -> tuple[float, float]:
        nonlocal ended
        result = await bench.saga(n)
        ended += 1
        if ended == warmup:
            sampler.warm()
        return result

    return saga


def report(result: Scale, console: Console) -> None:
    runs = Table(title="throughput by run size")
    for column in ("orders", "seconds", "per second", "p50 ms", "p99 ms", "CPU ms/order", "steal"):
        runs.add_column(column)
    for run in result.runs:
        runs.add_row(
            str(run.orders),
            f"{run.seconds:.0f}",
            f"{run.per_second:.2f}",
            f"{run.latency.p50:.0f}",
            f"{run.latency.p99:.0f}",
            f"{run.cpu_ms_per_order:.0f}",
            f"{run.steal:.1%}",
        )
    console.print(runs)
    console.print(f"largest run's throughput / smallest run's: [bold]{result.ratio}[/]")
    memory = Table(
        title="RSS across the last run (the soak): its first minute, the minute after "
        "the warm-up, its peak and last minute"
    )
    columns = (
        "process",
        "minutes",
        "first MB",
        "warm MB",
        "peak MB",
        "last MB",
        "growth",
        "after warm-up",
    )
    for column in columns:
        memory.add_column(column)
    for m in result.memory:
        memory.add_row(
            m.process,
            f"{m.minutes:.1f}",
            f"{m.first_mb:.0f}",
            "—" if m.warm_mb is None else f"{m.warm_mb:.0f}",
            f"{m.peak_mb:.0f}",
            f"{m.last_mb:.0f}",
            f"{m.growth:+.1%}",
            "—" if m.warm_growth is None else f"{m.warm_growth:+.1%} over {m.warm_minutes} min",
        )
    console.print(memory)
