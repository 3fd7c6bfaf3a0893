"""`geosaga bench --scale`: throughput at growing order counts, and the processes' memory.

While the runs go on, the resident set size (RSS) of the API and of every region worker is
read from /proc every few seconds (Linux), so a leak shows as growth across the longest run.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from geosaga.bench import Bench, Percentiles, _concurrently
from geosaga.bench_procs import TEMPORAL, rss_mb, stack_processes

_SAMPLE_SECONDS = 5.0


@dataclass(frozen=True)
class ScaleRun:
    orders: int
    seconds: float
    per_second: float
    latency: Percentiles


@dataclass(frozen=True)
class Memory:
    process: str
    first_mb: float
    peak_mb: float
    last_mb: float
    minutes: float

    @property
    def growth(self) -> float:
        """Last minute's RSS over the first minute's, as a fraction (0.05 = 5 % more)."""
        return round(self.last_mb / self.first_mb - 1, 3) if self.first_mb else 0.0


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
    """Samples RSS per process until stopped; summarises first minute against last."""

    def __init__(self, processes: dict[int, str]) -> None:
        self.processes = processes
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)

    async def run(self) -> None:
        started = time.monotonic()
        while True:
            for pid, name in self.processes.items():
                mb = rss_mb(pid)
                if mb is not None:
                    self.samples[name].append((time.monotonic() - started, mb))
            await asyncio.sleep(_SAMPLE_SECONDS)

    def summary(self) -> list[Memory]:
        memory = []
        for name, samples in sorted(self.samples.items()):
            end = samples[-1][0]
            first = [mb for t, mb in samples if t <= 60] or [samples[0][1]]
            last = [mb for t, mb in samples if t >= end - 60] or [samples[-1][1]]
            memory.append(
                Memory(
                    process=name,
                    first_mb=round(max(first), 1),
                    peak_mb=round(max(mb for _, mb in samples), 1),
                    last_mb=round(max(last), 1),
                    minutes=round(end / 60, 1),
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
) -> Scale:
    """Runs each count of orders in turn; memory is sampled over the last (the soak)."""
    runs = []
    processes = stack_processes(data_dir)
    sampler = MemorySampler({pid: name for pid, name in processes.items() if name != TEMPORAL})
    sampling: asyncio.Task[None] | None = None
    try:
        for n, count in enumerate(counts):
            if n == len(counts) - 1:
                sampling = asyncio.create_task(sampler.run())
            started = time.perf_counter()
            pairs = await _concurrently(bench.saga, count, concurrency, f"{count} orders", console)
            seconds = time.perf_counter() - started
            runs.append(
                ScaleRun(
                    orders=count,
                    seconds=round(seconds, 1),
                    per_second=round(count / seconds, 2),
                    latency=Percentiles.of([p[1] for p in pairs]),
                )
            )
    finally:
        if sampling is not None:
            sampling.cancel()
    return Scale(runs=runs, memory=sampler.summary())


def report(result: Scale, console: Console) -> None:
    runs = Table(title="throughput by run size")
    for column in ("orders", "seconds", "per second", "p50 ms", "p99 ms"):
        runs.add_column(column)
    for run in result.runs:
        runs.add_row(
            str(run.orders),
            f"{run.seconds:.0f}",
            f"{run.per_second:.2f}",
            f"{run.latency.p50:.0f}",
            f"{run.latency.p99:.0f}",
        )
    console.print(runs)
    console.print(f"largest run's throughput / smallest run's: [bold]{result.ratio}[/]")
    memory = Table(title="RSS across the largest run (first minute, peak, last minute)")
    for column in ("process", "minutes", "first MB", "peak MB", "last MB", "growth"):
        memory.add_column(column)
    for m in result.memory:
        memory.add_row(
            m.process,
            f"{m.minutes:.1f}",
            f"{m.first_mb:.0f}",
            f"{m.peak_mb:.0f}",
            f"{m.last_mb:.0f}",
            f"{m.growth:+.1%}",
        )
    console.print(memory)
