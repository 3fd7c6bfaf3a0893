"""`geosaga dev`: the whole local stack in the foreground, stopped together on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from asyncio.subprocess import Process
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from foundation.security import (
    DEV_API_KEY,
    DEV_GATEWAY_KEY,
    Keyring,
    api_keys,
    gateway_key,
    payload_keyring,
)
from foundation.settings import Settings
from geosaga.devserver import SQLITE_PRAGMAS, DevServer, wait_for_port, wait_until_serving
from geosaga.ports import holder, taken
from geosaga.processes import terminate
from regions.seed import seed_demo_stock
from regions.store import close_stores, open_stores

DEV_METRICS_PORT = 9464


def dev_server_for(settings: Settings) -> DevServer:
    host, _, port = settings.temporal_address.rpartition(":")
    ui_port = urlsplit(settings.temporal_ui_url).port or 8233
    return DevServer(
        ip=host,
        port=int(port),
        ui_port=ui_port,
        db_filename=settings.data_dir / "temporal.db",
        namespace=settings.temporal_namespace,
        codec_endpoint=codec_endpoint(settings),
        sqlite_pragmas=SQLITE_PRAGMAS if settings.dev_sqlite_pragmas else (),
        dynamic_config=settings.dev_dynamic_config,
        go_gc=settings.dev_go_gc,
    )


def stack_ports(settings: Settings) -> list[tuple[str, str, int]]:
    """What `geosaga dev` listens on, by name. Not the workers' metrics ports: each takes the
    next free one, and the dev server's HTTP and metrics ports are random."""
    server = dev_server_for(settings)
    return [
        ("Temporal frontend", server.ip, server.port),
        ("Temporal Web UI", server.ip, server.ui_port),
        ("payment gateway", settings.gateway_host, settings.gateway_port),
        ("API", settings.api_host, settings.api_port),
    ]


def port_in_use(settings: Settings) -> str | None:
    """One line naming the first of the stack's ports that is taken and who holds it; None
    when every one is free. Checked before anything starts: a second stack would otherwise
    announce itself, then lose every port to the first."""
    for name, host, port in stack_ports(settings):
        if taken(host, port):
            who = holder(port)
            by = f" by {who}" if who else ""
            return (
                f"the {name} port {host}:{port} is taken{by}: a geosaga stack is probably "
                "already running (stop it, or set other ports: README, Configuration)"
            )
    return None


def codec_endpoint(settings: Settings) -> str:
    """Where the Web UI decodes payloads: the API's codec endpoint."""
    return f"{settings.api_url.rstrip('/')}/codec"


async def run_dev(settings: Settings, console: Console) -> int:
    """Runs until SIGINT/SIGTERM or until a child dies; returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    server = dev_server_for(settings)
    # Refuse before starting anything: production settings without keys do not run.
    keys = api_keys(settings)
    keyring = payload_keyring(settings)
    gateway_key(settings)
    busy = port_in_use(settings)
    if busy is not None:
        console.print(f"[red]{busy}", highlight=False, soft_wrap=True)
        return 1
    children: list[tuple[str, Process]] = []
    try:
        children.append(("temporal", await _spawn(server.command(), server.environment())))
        await wait_for_port(server.ip, server.port)
        await wait_until_serving(server.address)
        stores = open_stores(settings)
        try:
            seeded = seed_demo_stock(stores)
        finally:
            close_stores(stores)
        # The payment gateway before the workers that call it: it listens once its tables exist.
        children.append(("gateway", await _spawn([sys.executable, "-m", "geosaga", "gateway"])))
        await wait_for_port(settings.gateway_host, settings.gateway_port)
        metrics_ports = worker_metrics_ports(settings)
        for region in settings.regions:
            worker = await _spawn(
                [sys.executable, "-m", "geosaga", "worker", "--region", region],
                {"GEOSAGA_WORKER_METRICS_PORT": str(metrics_ports[region])},
            )
            children.append((f"worker {region}", worker))
        children.append(("api", await _spawn([sys.executable, "-m", "geosaga", "api"])))
        await wait_for_port(settings.api_host, settings.api_port)
        _announce(console, settings, server, seeded, keys, keyring, metrics_ports)
        return await _supervise(children, stop, console)
    finally:
        await _stop_all(children)


def worker_metrics_ports(settings: Settings) -> dict[str, int]:
    """Each worker's own Prometheus port: the first free ones from GEOSAGA_WORKER_METRICS_PORT
    (default 9464) up, one per region, in catalog order."""
    ports: dict[str, int] = {}
    candidate = settings.worker_metrics_port or DEV_METRICS_PORT
    for region in settings.regions:
        while not _port_free(settings.worker_metrics_host, candidate):
            candidate += 1
        ports[region] = candidate
        candidate += 1
    return ports


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def _spawn(command: Sequence[str], env: Mapping[str, str] | None = None) -> Process:
    # A session of its own: Ctrl-C reaches only this supervisor, which stops children in order.
    return await asyncio.create_subprocess_exec(
        *command, env={**os.environ, **(env or {})}, start_new_session=True
    )


async def _supervise(
    children: list[tuple[str, Process]], stop: asyncio.Event, console: Console
) -> int:
    stopping = asyncio.ensure_future(stop.wait())
    exits = {asyncio.ensure_future(process.wait()): name for name, process in children}
    done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    for future in exits:
        if future in done:
            console.print(f"[red]{exits[future]} exited with {future.result()}; stopping[/red]")
            return 1
    for future in [stopping, *exits]:
        future.cancel()
    console.print("stopping…")
    return 0


async def _stop_all(children: list[tuple[str, Process]]) -> None:
    """The API first, then workers, then the gateway and Temporal: nothing is left mid-call to
    a dead server."""
    for _, process in reversed(children):
        await terminate(process)


def _announce(
    console: Console,
    settings: Settings,
    server: DevServer,
    seeded: list[str],
    keys: tuple[str, ...],
    keyring: Keyring,
    metrics_ports: Mapping[str, int],
) -> None:
    table = Table(title="geosaga is running", show_header=False)
    table.add_row("API", settings.api_url)
    table.add_row("API docs", f"{settings.api_url}/docs")
    # The development key is published (README); a configured key is never printed.
    development_key = keys == (DEV_API_KEY,) and not settings.api_keys
    table.add_row("API key", DEV_API_KEY if development_key else "one of GEOSAGA_API_KEYS")
    payload_key = "the development key" if keyring.development else f"key {keyring.current!r}"
    table.add_row("Payloads", f"encrypted with {payload_key}")
    table.add_row("Codec endpoint", codec_endpoint(settings))
    table.add_row("Temporal Web UI", server.ui_url)
    table.add_row("Temporal frontend", server.address)
    table.add_row("Regions", ", ".join(settings.regions))
    table.add_row("Payment gateway", settings.gateway_url)
    development_gateway_key = settings.gateway_api_key is None
    table.add_row(
        "Gateway key", DEV_GATEWAY_KEY if development_gateway_key else "GEOSAGA_GATEWAY_API_KEY"
    )
    host = settings.worker_metrics_host
    table.add_row(
        "Worker metrics",
        ", ".join(
            f"{region} http://{host}:{port}/metrics" for region, port in metrics_ports.items()
        ),
    )
    table.add_row("Data", str(settings.data_dir.resolve()))
    if seeded:
        table.add_row("Seeded demo stock", ", ".join(seeded))
    console.print(table)
    if development_key:
        console.print(
            f"Writes need the development key: -H 'Authorization: Bearer {DEV_API_KEY}'",
            highlight=False,
            soft_wrap=True,
        )
    console.print("Ctrl-C stops everything.")
