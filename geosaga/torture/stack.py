"""The stack a torture run breaks: its own Temporal dev server, payment gateway, API and a
worker per region, each a process it can SIGKILL, SIGSTOP and start again; every worker
reaches Temporal (and, on PostgreSQL, its store) through a proxy the nemesis can cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from foundation.settings import Settings
from foundation.temporal import connect
from geosaga.devserver import DevServer, free_port, wait_for_port, wait_until_serving
from geosaga.processes import terminate
from geosaga.torture import postgres
from geosaga.torture.proxy import Proxies
from geosaga.torture.schedule import (
    ACTIVITY_TIMEOUT_SECONDS,
    GATEWAY_TIMEOUT_SECONDS,
    REGIONS,
    Store,
    activity_faults,
)

# Short timings, as the chaos tests had: faults show their effects within seconds.
TIMING: dict[str, float] = {
    "allocation_timeout_seconds": 2.0,
    "activity_timeout_seconds": ACTIVITY_TIMEOUT_SECONDS,
    "payment_timeout_seconds": 8.0,
    "retry_initial_interval_seconds": 0.2,
    "retry_maximum_interval_seconds": 1.0,
    "compensation_attempts_before_attention": 3,
    "compensation_attention_after_seconds": 5.0,
    "compensation_max_backoff_seconds": 2.0,
}
_STARTUP_SECONDS = 120.0


class StackFailed(Exception):
    """The stack did not come up; the message says which part and where its log is."""


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    paused: bool = False
    # Down on purpose (killed by the nemesis, not yet started again): not a crash.
    killed: bool = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


@dataclass
class Stack:
    folder: Path
    store: Store
    seed: int
    regions: tuple[str, ...] = REGIONS
    keep: bool = False
    server: DevServer = field(init=False)
    settings: Settings = field(init=False)
    proxies: Proxies = field(init=False)
    children: dict[str, Child] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    gateway_key: str = field(default_factory=lambda: f"torture-gw-{secrets.token_hex(12)}")
    api_key: str = field(default_factory=lambda: f"torture-{secrets.token_hex(12)}")
    _client: Client | None = None

    def __post_init__(self) -> None:
        self.data = self.folder / "data"
        self.logs = self.folder / "logs"
        self.skew_dir = self.folder / "clock-skew"
        self.server = DevServer(
            port=free_port(), db_filename=self.folder / "temporal.db", headless=True
        )
        self.api_port = free_port()
        self.gateway_port = free_port()
        self.prefix = f"t{self.seed}-{uuid.uuid4().hex[:6]}"
        self.activity_faults = activity_faults(self.seed, self.regions)

    # Addresses ---------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def store_urls(self) -> dict[str, str]:
        """Each region's store as the API, the checker and the harness reach it (directly)."""
        return {region: self.settings.database_url(region) for region in self.regions}

    def sqlite_path(self, region: str) -> Path:
        return self.data / f"{region}.db"

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the stack has not started")
        return self._client

    # Start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        for folder in (self.data, self.logs, self.skew_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if self.store == "postgres":
            self.databases = await asyncio.to_thread(
                postgres.create_databases, self.seed, self.regions
            )
        self.settings = self._settings()
        self.proxies = Proxies()
        for region in self.regions:
            await self.proxies.add(
                f"temporal-{region}", free_port(), (self.server.ip, self.server.port)
            )
            if self.store == "postgres":
                await self.proxies.add(f"store-{region}", free_port(), postgres.server())
        self._define_children()
        await self.spawn("temporal")
        await self.until_temporal_serves()
        self._client = await connect(self.settings)
        # All at once (nothing calls the gateway before the load begins): the start is
        # mostly each process importing its modules, which the two cores do side by side.
        for name in self.children:
            if name != "temporal":
                await self.spawn(name)
        await self._until_healthy(f"{self.gateway_url}/healthz", "gateway")
        await self.until_api_serves()
        await self._until_workers_poll()

    async def close(self) -> None:
        """Stops every process (the API first, Temporal last), the proxies, and drops the
        PostgreSQL databases unless the run keeps them."""
        for name in reversed(list(self.children)):
            await self._stop(self.children[name])
        if hasattr(self, "proxies"):
            await self.proxies.close()
        if self.databases and not self.keep:
            await asyncio.to_thread(postgres.drop_databases, self.databases.values())

    # Processes ---------------------------------------------------------------------------------

    async def spawn(self, name: str) -> None:
        """Starts the process (again, after a kill: same ports, same files)."""
        child = self.children[name]
        with _log_file(child.log) as log:
            child.process = await asyncio.create_subprocess_exec(
                *child.command,
                env=child.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                # A session of its own: a Ctrl-C on the harness reaches only the harness,
                # which stops its children in order.
                start_new_session=True,
            )
        child.paused = child.killed = False

    async def kill(self, name: str) -> None:
        """SIGKILL: no chance to flush, finish a request or say goodbye."""
        child = self.children[name]
        child.killed = True
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGKILL)
            await child.process.wait()
        child.paused = False

    def pause(self, name: str) -> None:
        self._signal(name, signal.SIGSTOP)
        self.children[name].paused = True

    def resume(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)
        self.children[name].paused = False

    def pid(self, name: str) -> int | None:
        process = self.children[name].process
        return process.pid if process is not None else None

    def crashed(self) -> dict[str, int]:
        """Processes that ended on their own (not killed by the nemesis): name → exit code."""
        return {
            name: child.process.returncode
            for name, child in self.children.items()
            if child.process is not None
            and child.process.returncode is not None
            and not child.killed
        }

    def _signal(self, name: str, signum: signal.Signals) -> None:
        process = self.children[name].process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    async def _stop(self, child: Child) -> None:
        child.killed = True
        process = child.process
        if process is None or process.returncode is not None:
            return
        if child.paused:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
        await terminate(process)

    # Readiness ---------------------------------------------------------------------------------

    async def until_temporal_serves(self, timeout: float = _STARTUP_SECONDS) -> None:
        await wait_for_port(self.server.ip, self.server.port, timeout)
        await wait_until_serving(self.server.address, timeout)

    async def until_api_serves(self) -> None:
        """Until the API answers /healthz with 200 (it reaches Temporal)."""
        await self._until_healthy(f"{self.api_url}/healthz", "api")

    async def _until_healthy(self, url: str, name: str) -> None:
        deadline = asyncio.get_running_loop().time() + _STARTUP_SECONDS
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                self._require_running(name)
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url)).status_code == 200:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    raise StackFailed(
                        f"{name} is not healthy at {url}; see {self.children[name].log}"
                    )
                await asyncio.sleep(0.2)

    async def _until_workers_poll(self) -> None:
        """Until the saga queue and every region's activity queue have a poller."""
        queues = [(self.settings.workflow_task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)]
        queues += [
            (self.settings.task_queue(region), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
            for region in self.regions
        ]
        deadline = asyncio.get_running_loop().time() + _STARTUP_SECONDS
        for queue, kind in queues:
            while True:
                for region in self.regions:
                    self._require_running(f"worker-{region}")
                described = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=queue),
                        task_queue_type=kind,
                    )
                )
                if described.pollers:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise StackFailed(f"no worker polls {queue}; see {self.logs}/worker-*.log")
                await asyncio.sleep(0.2)

    def _require_running(self, name: str) -> None:
        child = self.children[name]
        if not child.running:
            code = child.process.returncode if child.process is not None else None
            raise StackFailed(f"{name} exited ({code}) while starting; see {child.log}")

    # Configuration -----------------------------------------------------------------------------

    def _settings(self) -> Settings:
        """The stack's settings as the harness uses them (its Temporal client, the stores)."""
        urls = {}
        if self.store == "postgres":
            urls = {
                region: postgres.database_url(self.databases[region]) for region in self.regions
            }
        return Settings(
            temporal_address=self.server.address,
            workflow_task_queue=f"{self.prefix}.orders",
            region_task_queue_prefix=f"{self.prefix}.region.",
            regions=self.regions,
            data_dir=self.data,
            database_url_template=f"sqlite:///{self.data}/{{region}}.db",
            database_urls=urls,
            replication=True,
            api_host="127.0.0.1",
            api_port=self.api_port,
            api_url=self.api_url,
            api_keys=(SecretStr(self.api_key),),
            clock_skew_dir=self.skew_dir,
            tracing=False,
            **TIMING,  # type: ignore[arg-type]
        )

    def _environment(self, **overrides: str) -> dict[str, str]:
        s = self.settings
        env = {name: value for name, value in os.environ.items() if not name.startswith("GEOSAGA_")}
        env.update(
            {
                "GEOSAGA_TEMPORAL_ADDRESS": s.temporal_address,
                "GEOSAGA_WORKFLOW_TASK_QUEUE": s.workflow_task_queue,
                "GEOSAGA_REGION_TASK_QUEUE_PREFIX": s.region_task_queue_prefix,
                "GEOSAGA_REGIONS": ",".join(s.regions),
                "GEOSAGA_DATA_DIR": str(s.data_dir),
                "GEOSAGA_DATABASE_URL_TEMPLATE": s.database_url_template,
                "GEOSAGA_DATABASE_URLS": json.dumps(s.database_urls),
                "GEOSAGA_REPLICATION": "true",
                "GEOSAGA_API_HOST": s.api_host,
                "GEOSAGA_API_PORT": str(s.api_port),
                "GEOSAGA_API_URL": s.api_url,
                "GEOSAGA_API_KEYS": self.api_key,
                "GEOSAGA_CLOCK_SKEW_DIR": str(self.skew_dir),
                "GEOSAGA_TRACING": "false",
                "GEOSAGA_GATEWAY_HOST": "127.0.0.1",
                "GEOSAGA_GATEWAY_PORT": str(self.gateway_port),
                "GEOSAGA_GATEWAY_URL": self.gateway_url,
                "GEOSAGA_GATEWAY_API_KEY": self.gateway_key,
                "GEOSAGA_GATEWAY_DATABASE_URL": f"sqlite:///{self.data}/gateway.db",
                "GEOSAGA_GATEWAY_TIMEOUT_SECONDS": str(GATEWAY_TIMEOUT_SECONDS),
                **{f"GEOSAGA_{name.upper()}": str(value) for name, value in TIMING.items()},
            }
        )
        env.update(overrides)
        return env

    def _define_children(self) -> None:
        geosaga = [sys.executable, "-m", "geosaga"]
        self.children["temporal"] = Child(
            "temporal",
            self.server.command(),
            self.server.environment(),
            self.logs / "temporal.log",
        )
        self.children["gateway"] = Child(
            "gateway", [*geosaga, "gateway"], self._environment(), self.logs / "gateway.log"
        )
        for region in self.regions:
            overrides = {
                "GEOSAGA_TEMPORAL_ADDRESS": self.proxies.by_name[f"temporal-{region}"].address
            }
            if self.store == "postgres":
                port = self.proxies.by_name[f"store-{region}"].port
                urls = {**self.settings.database_urls}
                urls[region] = postgres.database_url(self.databases[region], port=port)
                overrides["GEOSAGA_DATABASE_URLS"] = json.dumps(urls)
            overrides["GEOSAGA_FAULTS"] = json.dumps({region: self.activity_faults[region]})
            name = f"worker-{region}"
            self.children[name] = Child(
                name,
                [*geosaga, "worker", "--region", region],
                self._environment(**overrides),
                self.logs / f"{name}.log",
            )
        self.children["api"] = Child(
            "api", [*geosaga, "api"], self._environment(), self.logs / "api.log"
        )

    def info(self) -> dict[str, Any]:
        """What the checker and a person need to find the stack's parts (no keys)."""
        return {
            "folder": str(self.folder),
            "store": self.store,
            "seed": self.seed,
            "regions": list(self.regions),
            "api_url": self.api_url,
            "gateway_url": self.gateway_url,
            "temporal_address": self.server.address,
            "temporal_namespace": self.settings.temporal_namespace,
            "workflow_task_queue": self.settings.workflow_task_queue,
            "region_task_queue_prefix": self.settings.region_task_queue_prefix,
            "store_urls": {
                region: make_url(url).render_as_string(hide_password=True)
                for region, url in self.store_urls().items()
            },
            "postgres_databases": self.databases,
            "activity_faults": self.activity_faults,
            "clock_skew_dir": str(self.skew_dir),
            "logs": str(self.logs),
        }


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[IO[bytes]]:
    """A process's log, appended to across its restarts (the child keeps its own handle)."""
    with path.open("ab") as log:
        yield log
