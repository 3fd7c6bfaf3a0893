"""The `geosaga` command."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from rich.console import Console

from foundation.security import ConfigurationError
from foundation.settings import Settings
from foundation.telemetry import configure_process
from geosaga.checks import require_region
from geosaga.operate import attention, dead_letters, rerun

app = typer.Typer(help="geosaga: a multi-region order service on Temporal.", no_args_is_help=True)
console = Console()


@contextmanager
def _refusing_unsafe_settings() -> Iterator[None]:
    """Settings that must not run (production without keys) end the command with exit 2."""
    try:
        yield
    except ConfigurationError as refused:
        console.print(f"[red]refusing to start:[/] {refused}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def dev(
    check: Annotated[
        bool,
        typer.Option(help="Only check that the stack's ports are free (exit 1 when one is taken)"),
    ] = False,
) -> None:
    """Run the whole local stack: Temporal dev server + Web UI, one worker per region, the API."""
    from geosaga.dev import port_in_use, run_dev

    if check:
        busy = port_in_use(Settings())
        if busy is not None:
            console.print(f"[red]{busy}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        console.print("the stack's ports are free")
        return
    with _refusing_unsafe_settings():
        code = asyncio.run(run_dev(Settings(), console))
    raise typer.Exit(code)


@app.command()
def worker(region: Annotated[str, typer.Option(help="The region this process serves")]) -> None:
    """Run one region's worker: its activities on region.NAME, workflows on the orders queue."""
    from regions.clock import use_skew
    from worker.process import run_region

    settings = Settings()
    # Logs with trace ids, tracing, and the runtime that serves this worker's metrics.
    configure_process(settings, f"worker-{region}", worker=True)
    use_skew(settings.clock_skew_dir)
    require_region(settings, region)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_region(settings, region, stop)

    with _refusing_unsafe_settings():
        asyncio.run(main())


@app.command()
def api() -> None:
    """Serve the HTTP API."""
    from api.main import create_app
    from regions.clock import use_skew

    settings = Settings()
    configure_process(settings, "api")
    use_skew(settings.clock_skew_dir)
    with _refusing_unsafe_settings():
        served = create_app(settings)
    # No log config of uvicorn's own: its lines go through the process's (trace ids, JSON).
    # httptools, not h11: its C parser costs the API less per request (BENCHMARKS.md).
    uvicorn.run(
        served,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        http="httptools",
    )


@app.command()
def gateway() -> None:
    """Serve the sandbox payment gateway, with its own ledger (docs/gateway.md)."""
    from gateway.app import create_app as create_gateway

    settings = Settings()
    configure_process(settings, "gateway")
    with _refusing_unsafe_settings():
        served = create_gateway(settings)
    # A request held by an injected hang does not hold up a stop for longer than this.
    uvicorn.run(
        served,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        http="httptools",
        timeout_graceful_shutdown=5,
    )


app.add_typer(attention, name="attention")
app.add_typer(dead_letters, name="dead-letters")
app.command(name="retry")(rerun)


@app.command()
def check(
    settled: Annotated[
        bool, typer.Option(help="A saga that has not ended counts as a violation")
    ] = False,
) -> None:
    """Check the invariants across every region store and Temporal; exit 1 on a violation."""
    from foundation.temporal import connect
    from geosaga.check import check as check_invariants
    from geosaga.check import summary
    from regions.store import close_stores, open_stores

    settings = Settings()
    stores = open_stores(settings, create=False)

    async def main() -> bool:
        report = await check_invariants(await connect(settings), stores, settled=settled)
        console.print(summary(report), highlight=False)
        return report.ok

    try:
        ok = asyncio.run(main())
    finally:
        close_stores(stores)
    if not ok:
        raise typer.Exit(1)


@app.command()
def bench(
    orders: Annotated[int, typer.Option(help="Orders (and floor workflows) under load")] = 200,
    concurrency: Annotated[int, typer.Option(help="How many at a time")] = 20,
    idle: Annotated[int, typer.Option(help="One-at-a-time runs for idle latency")] = 20,
    starts: Annotated[
        int, typer.Option(help="One-at-a-time starts each way: POST /orders and a raw start")
    ] = 100,
    spawn: Annotated[
        bool,
        typer.Option(
            help="Run a throwaway `geosaga dev` on free ports instead of the configured stack"
        ),
    ] = False,
    compare_stock: Annotated[
        bool, typer.Option(help="With --spawn: also measure the untuned stack, in the same run")
    ] = False,
    scale: Annotated[
        str | None,
        typer.Option(
            help="Then runs of these sizes (e.g. 1000,10000): throughput by size, and RSS of the "
            "API and workers across the last run (the soak)"
        ),
    ] = None,
    soak_warmup: Annotated[
        int,
        typer.Option(
            min=0,
            help="The soak's memory baseline is the minute after this many of its orders "
            "(the workers' warm-up); 0: its first minute only",
        ),
    ] = 3000,
    heals: Annotated[
        int,
        typer.Option(
            help="With --spawn: cut the last region off this many times (its worker frozen while "
            "orders run elsewhere) and time how long it takes to catch up"
        ),
    ] = 0,
    against: Annotated[
        list[str] | None,
        typer.Option(
            help="With --spawn, instead of the rest: two stacks at once, the second with this "
            "setting (GEOSAGA_NAME=value, repeatable), --orders sagas on each at the same time; "
            "prints their CPU per saga and throughput as ratios"
        ),
    ] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Write the results here")] = None,
) -> None:
    """Real sagas over HTTP against the floor (no-op activities of the same shape)."""
    import json
    from pathlib import Path

    from geosaga import bench

    if heals and not spawn:
        raise typer.BadParameter("needs --spawn: it freezes a worker of its own stack")
    if against:
        if not spawn:
            raise typer.BadParameter("needs --spawn: it runs two stacks of its own")
        compared = asyncio.run(bench.against(_overrides(against), orders, concurrency))
        bench.report_against(compared, console)
        if json_out:
            Path(json_out).write_text(json.dumps({"against": compared.as_json()}, indent=2) + "\n")
        return
    results = asyncio.run(
        bench.bench_all(
            Settings(),
            bench.Sizes(orders, concurrency, idle, starts, _counts(scale), heals, soak_warmup),
            spawn,
            compare_stock,
            console,
        )
    )
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2) + "\n")


def _overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.startswith("GEOSAGA_"):
            raise typer.BadParameter(f"{pair!r} is not GEOSAGA_NAME=value", param_hint="--against")
        overrides[name] = value
    return overrides


def _counts(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError as error:
        raise typer.BadParameter(
            "a comma-separated list of order counts", param_hint="--scale"
        ) from error
    if any(count < 1 for count in counts):
        raise typer.BadParameter("every count must be at least 1", param_hint="--scale")
    return counts


@app.command("event-schemas")
def event_schemas(
    out: Annotated[str | None, typer.Option(help="Write to this file instead of stdout")] = None,
) -> None:
    """Export every event type's JSON Schema (with its version and aggregate)."""
    import json
    from pathlib import Path

    from regions.events import json_schemas

    text = json.dumps(json_schemas(), indent=2, sort_keys=True) + "\n"
    if out:
        Path(out).write_text(text)
    else:
        console.out(text, highlight=False)


@app.command()
def setup() -> None:
    """Register the saga's search attributes on the configured Temporal namespace (idempotent)."""
    from foundation.temporal import connect, ensure_search_attributes
    from workflows.contract import SEARCH_ATTRIBUTES

    async def main() -> list[str]:
        return await ensure_search_attributes(await connect(Settings()), SEARCH_ATTRIBUTES)

    added = asyncio.run(main())
    console.print(f"added: {', '.join(added)}" if added else "search attributes already present")


# torture: self-contained as well ----------------------------------------------------------------


@app.command()
def torture(
    seed: Annotated[int, typer.Option(help="Draws the fault schedule and the workload")],
    minutes: Annotated[
        float, typer.Option(min=0.05, help="How long the load and the faults last (e.g. 0.5)")
    ] = 2.0,
    store: Annotated[str, typer.Option(help="The regions' stores: sqlite or postgres")] = "sqlite",
    out: Annotated[
        str | None, typer.Option(help="The run's folder (default: torture-SEED-STORE)")
    ] = None,
    keep: Annotated[
        bool, typer.Option(help="Keep the PostgreSQL databases afterwards (SQLite files stay)")
    ] = False,
) -> None:
    """Break a stack of its own on the seed's fault schedule under load, let it quiesce, check
    every promise and write a report; exit 1 on a violation."""
    from pathlib import Path

    from geosaga.torture.run import TortureError, run

    if store not in ("sqlite", "postgres"):
        raise typer.BadParameter("sqlite or postgres", param_hint="--store")
    try:
        report = asyncio.run(
            run(
                seed,
                minutes,
                "postgres" if store == "postgres" else "sqlite",
                Path(out) if out else None,
                keep=keep,
                progress=lambda line: console.print(line, highlight=False),
            )
        )
    except TortureError as failed:
        console.print(f"[red]torture could not run:[/] {failed}", highlight=False)
        raise typer.Exit(2) from None
    verdict = "[green]no violations" if report.ok else f"[red]{len(report.violations)} violations"
    console.print(f"{verdict}[/]; report: {report.folder}/report.md", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


# replay: self-contained, so other commands can come and go around it --------------------------


@app.command()
def replay(
    paths: Annotated[
        list[str] | None,
        typer.Argument(metavar="FILE|DIR", help="History files, or folders of *.json"),
    ] = None,
    history_file: Annotated[
        list[str] | None,
        typer.Option(
            "--history-file", "-f", metavar="FILE|DIR", help="A JSON history or a folder of them"
        ),
    ] = None,
    workflow_id: Annotated[
        list[str] | None,
        typer.Option("--workflow-id", "-w", metavar="ID", help="Fetch its history from Temporal"),
    ] = None,
) -> None:
    """Replay saga histories against the current code; exit 1 when one does not replay."""
    from pathlib import Path

    from geosaga.replay import replay_all
    from geosaga.replay.report import report

    files = [Path(path) for path in [*(history_file or []), *(paths or [])]]
    if not files and not workflow_id:
        console.print("[red]nothing to replay:[/] give --history-file FILE|DIR or --workflow-id ID")
        raise typer.Exit(2)
    outcomes = asyncio.run(replay_all(files, workflow_id or [], Settings()))
    raise typer.Exit(report(outcomes, console))


def main() -> None:
    """The `geosaga` command. It ends without the interpreter's teardown, during which the
    Temporal client's Rust threads can abort a short-lived process ("PyGILState_Release",
    temporalio/sdk-python#300): output, logs and spans are flushed first."""
    code: int = 0
    try:
        app()
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        _flush()
    os._exit(code)


def _flush() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
