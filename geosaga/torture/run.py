"""One torture run: start the stack, load it, break it on the seed's schedule, heal it, let it
quiesce, check it, and report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError

from geosaga.torture.audit import AuditFailed, RunRecord, audit
from geosaga.torture.clientlog import ClientLog, LoggedClient
from geosaga.torture.nemesis import Nemesis
from geosaga.torture.operator import Operator
from geosaga.torture.quiesce import quiesce
from geosaga.torture.report import Report, faults_by_kind, write
from geosaga.torture.sagas import latest_runs, outcomes
from geosaga.torture.schedule import Fault, Store, draw
from geosaga.torture.stack import Stack, StackFailed
from geosaga.torture.workload import Workload

# Requests wait out a held SQLite lock (up to 12 s) and a Temporal restart.
_HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Once the load is told to stop, its requests in flight get this long to end.
_LOAD_STOP_SECONDS = 60.0
_SUPERVISE_SECONDS = 1.0

Progress = Callable[[str], None]


class TortureError(Exception):
    """The run could not be carried out (not a finding about the service): one line says why."""


def default_folder(seed: int, store: Store) -> Path:
    return Path(f"torture-{seed}-{store}")


async def run(
    seed: int,
    minutes: float,
    store: Store = "sqlite",
    out: Path | None = None,
    *,
    keep: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Runs the torture; the report is also written to the run's folder."""
    say = progress or (lambda _: None)
    folder = (out or default_folder(seed, store)).resolve()
    if folder.exists() and any(folder.iterdir()):
        raise TortureError(f"{folder} is not empty; remove it or pass another --out")
    folder.mkdir(parents=True, exist_ok=True)
    schedule = draw(seed, minutes, store)
    _write_json(folder / "schedule.json", [fault.as_json() for fault in schedule])
    phases = _Phases()
    stack = Stack(folder, store, seed, keep=keep)
    try:
        say(f"starting the stack in {folder}")
        try:
            await stack.start()
        except (StackFailed, OSError, TimeoutError, RuntimeError, SQLAlchemyError) as failed:
            # PostgreSQL or a port out of reach, Temporal not serving, a process that exited.
            said = str(failed).strip().splitlines() or [repr(failed)]
            raise TortureError(f"the stack did not start: {said[0]}") from failed
        _write_json(folder / "stack.json", stack.info())
        phases.end("start")
        report = await _torture(stack, schedule, minutes, phases, say)
    finally:
        await stack.close()
    report.phases = phases.seconds
    report.seconds = phases.total()
    write(report, folder)
    return report


class _Phases:
    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def end(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self.last, 1)
        self.last = now

    def total(self) -> float:
        return round(time.monotonic() - self.began, 1)


async def _torture(
    stack: Stack, schedule: list[Fault], minutes: float, phases: _Phases, say: Progress
) -> Report:
    log = ClientLog(stack.folder / "client.jsonl", time.monotonic())
    violations: list[dict[str, Any]] = []
    async with _http(stack) as (api_http, gateway_http), contextlib.AsyncExitStack() as undo:
        undo.callback(log.close)
        api = LoggedClient(api_http, log)
        gateway = LoggedClient(gateway_http, log, "gateway:")
        operator = Operator(api, gateway, stack.client, {})
        workload = Workload(stack.seed, api, operator, stack.regions)
        await workload.seed_stock()
        nemesis = Nemesis(stack, schedule, stack.folder / "nemesis.jsonl", log, log.now())
        undo.push_async_callback(nemesis.heal)
        supervising = asyncio.create_task(_supervise(stack, log, violations))
        undo.push_async_callback(_cancel, supervising)
        say(f"load and {len(schedule)} faults for {minutes} min")
        stop = asyncio.Event()
        nemesis.start()
        loading = asyncio.create_task(workload.run(stop))
        undo.push_async_callback(_cancel, loading)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(loading), minutes * 60)
        stop.set()
        await asyncio.wait_for(loading, _LOAD_STOP_SECONDS)
        phases.end("load")
        say("healing every fault")
        await nemesis.heal()
        try:
            await stack.until_api_serves()
        except StackFailed as failed:
            nemesis.problems.append(f"after the heal: {failed}")
        phases.end("heal")
        say("quiescing")
        settled = await quiesce(operator, stack.settings)
        await _cancel(supervising)
        phases.end("quiesce")
        violations += settled.unsettled
        runs = await latest_runs(stack.client, stack.settings)
        say("checking")
        report = Report(
            seed=stack.seed,
            store=stack.store,
            minutes=minutes,
            folder=str(stack.folder),
            schedule=[fault.as_json() for fault in schedule],
            faults=faults_by_kind([done.__dict__ for done in nemesis.done]),
            outcomes=outcomes(runs, log.ended),
            requests=_by_status(log),
            problems=nemesis.problems,
            settled_after_seconds=settled.seconds,
        )
        await _audit(stack, report)
        report.violations = violations + report.violations
        phases.end("check")
        return report


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _audit(stack: Stack, report: Report) -> None:
    record = RunRecord(
        folder=stack.folder,
        api_url=stack.api_url,
        gateway_url=stack.gateway_url,
        gateway_key=stack.gateway_key,
        stores=stack.store_urls(),
        settings=stack.settings,
    )
    try:
        audited = await audit(record)
    except AuditFailed as failed:
        report.violations.append(
            {"rule": "audit", "detail": f"the checker could not read a source: {failed}"}
        )
        return
    report.violations = [violation.as_json() for violation in audited.violations]
    report.audit_outcomes = audited.outcomes


async def _supervise(stack: Stack, log: ClientLog, violations: list[dict[str, Any]]) -> None:
    """A process that died on its own is a finding; it is started again, as a supervisor
    (systemd, Kubernetes) would, so the run goes on."""
    while True:
        await asyncio.sleep(_SUPERVISE_SECONDS)
        for name, code in stack.crashed().items():
            violations.append(
                {
                    "rule": "crash",
                    "detail": f"{name} exited with {code} at {log.now()} s, not killed by the "
                    f"nemesis; see {stack.children[name].log}",
                    "orders": [],
                    "where": [name],
                }
            )
            await stack.spawn(name)
            if name == "temporal":
                await stack.until_temporal_serves()


def _by_status(log: ClientLog) -> dict[str, int]:
    counts: dict[str, int] = {}
    for exchange in log.ended:
        service = "" if exchange.path.startswith("/") else exchange.path.split(":", 1)[0] + " "
        key = service + ("lost" if exchange.status is None else str(exchange.status))
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


@contextlib.asynccontextmanager
async def _http(
    stack: Stack,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as clients:
        api = await clients.enter_async_context(
            httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {stack.api_key}"},
                timeout=_HTTP_TIMEOUT,
            )
        )
        gateway = await clients.enter_async_context(
            httpx.AsyncClient(
                base_url=stack.gateway_url,
                headers={"Authorization": f"Bearer {stack.gateway_key}"},
                timeout=_HTTP_TIMEOUT,
            )
        )
        yield api, gateway


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")
