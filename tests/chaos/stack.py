"""A stack to break on purpose: its own Temporal dev server, region workers as processes that
can be killed with SIGKILL, the API in this process, region stores on SQLite files, and a
payment gateway process of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from foundation.settings import Settings
from geosaga.devserver import DevServer, free_port, wait_for_port, wait_until_serving
from tests.gateway_server import TEST_GATEWAY_KEY, gateway_process


@dataclass
class ChaosStack:
    folder: Path
    faults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    server: DevServer = field(init=False)
    settings: Settings = field(init=False)
    _temporal: subprocess.Popen[bytes] | None = None
    _workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _gateway: ExitStack = field(default_factory=ExitStack)
    gateway_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.server = DevServer(
            port=free_port(), db_filename=self.folder / "temporal.db", headless=True
        )
        prefix = f"c{uuid.uuid4().hex[:8]}"
        self.settings = Settings(
            temporal_address=self.server.address,
            workflow_task_queue=f"{prefix}.orders",
            region_task_queue_prefix=f"{prefix}.region.",
            data_dir=self.folder,
            database_url_template=f"sqlite:///{self.folder}/{{region}}.db",
            replication=False,
            allocation_timeout_seconds=2.0,
            activity_timeout_seconds=3.0,
            retry_initial_interval_seconds=0.2,
            retry_maximum_interval_seconds=1.0,
            compensation_attempts_before_attention=3,
            compensation_attention_after_seconds=5.0,
            compensation_max_backoff_seconds=2.0,
            payment_timeout_seconds=8.0,
            gateway_url=f"http://127.0.0.1:{self.gateway_port}",
            gateway_api_key=TEST_GATEWAY_KEY,
        )

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {
            **os.environ,
            "GEOSAGA_TEMPORAL_ADDRESS": s.temporal_address,
            "GEOSAGA_WORKFLOW_TASK_QUEUE": s.workflow_task_queue,
            "GEOSAGA_REGION_TASK_QUEUE_PREFIX": s.region_task_queue_prefix,
            "GEOSAGA_DATA_DIR": str(s.data_dir),
            "GEOSAGA_DATABASE_URL_TEMPLATE": s.database_url_template,
            "GEOSAGA_REPLICATION": "false",
            "GEOSAGA_GATEWAY_URL": s.gateway_url,
            "GEOSAGA_GATEWAY_API_KEY": TEST_GATEWAY_KEY,
            # Within the 3 s activity timeout, so a call never outlives its attempt.
            "GEOSAGA_GATEWAY_TIMEOUT_SECONDS": "2",
        }
        if self.faults:
            env["GEOSAGA_FAULTS"] = json.dumps(self.faults)
        return env

    async def start_temporal(self) -> None:
        with (self.folder / "temporal.log").open("ab") as log:
            self._temporal = subprocess.Popen(
                self.server.command(), stdout=log, stderr=subprocess.STDOUT
            )
        await wait_for_port(self.server.ip, self.server.port)
        await wait_until_serving(self.server.address)

    def kill_temporal(self) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        assert self._temporal is not None
        self._temporal.send_signal(signal.SIGKILL)
        self._temporal.wait()

    def start_worker(
        self,
        region: str,
        *,
        database_urls: Mapping[str, str] | None = None,
        replication: bool = False,
    ) -> None:
        env = self.env()
        if database_urls:
            env["GEOSAGA_DATABASE_URLS"] = json.dumps(dict(database_urls))
        if replication:
            env["GEOSAGA_REPLICATION"] = "true"
        with (self.folder / f"worker-{region}.log").open("ab") as log:
            self._workers[region] = subprocess.Popen(
                [sys.executable, "-m", "geosaga", "worker", "--region", region],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def worker_running(self, region: str) -> bool:
        process = self._workers.get(region)
        return process is not None and process.poll() is None

    def kill_worker(self, region: str) -> None:
        process = self._workers.pop(region)
        process.send_signal(signal.SIGKILL)
        process.wait()

    async def start(self) -> None:
        await asyncio.to_thread(
            self._gateway.enter_context,
            gateway_process(self.folder, port=self.gateway_port),
        )
        await self.start_temporal()
        for region in self.settings.regions:
            self.start_worker(region)
        await self.wait_for_workers()

    async def wait_for_workers(self, timeout: float = 60.0) -> None:
        """Until every region's activity queue and the workflow queue have a poller."""
        client = await Client.connect(self.settings.temporal_address)
        queues = [self.settings.workflow_task_queue] + [
            self.settings.task_queue(region) for region in self._workers
        ]
        deadline = asyncio.get_running_loop().time() + timeout
        for queue in queues:
            kind = (
                TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
                if queue == self.settings.workflow_task_queue
                else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
            )
            while True:
                described = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=client.namespace,
                        task_queue=TaskQueue(name=queue),
                        task_queue_type=kind,
                    )
                )
                if described.pollers:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"no worker polls {queue}; see {self.folder}/worker-*.log")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for region in list(self._workers):
            process = self._workers.pop(region)
            process.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), 10)
            except TimeoutError:
                process.kill()
        if self._temporal is not None and self._temporal.poll() is None:
            self._temporal.terminate()
            self._temporal.wait(timeout=30)
        await asyncio.to_thread(self._gateway.close)
