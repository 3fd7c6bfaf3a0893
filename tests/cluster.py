"""In-process workers for tests: one workflow worker, one activity worker per region.

Stopping a region stops its activity worker: that region's activities stay queued until it
starts again, as when a region's process is down. Workflows hold no region state, so the one
workflow worker stands in for every region process's.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from temporalio.client import Client
from temporalio.worker import Worker

from activities.gateway_client import HttpGateway
from foundation.settings import Settings
from regions.store import Store
from worker.process import ACTIVITY_THREADS, activity_worker, start_relays, workflow_worker


class Cluster:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        stores: dict[str, Store],
        *,
        max_cached_workflows: int | None = None,
        replication: bool = False,
    ) -> None:
        self.client = client
        self.settings = settings
        self.stores = stores
        self._executor = ThreadPoolExecutor(ACTIVITY_THREADS)
        # One pooled client for every region, as in a worker process (settings.gateway_url).
        self.gateway = HttpGateway.from_settings(settings)
        self._running: dict[str, tuple[Worker, asyncio.Task[None]]] = {}
        self._max_cached_workflows = max_cached_workflows
        self._workflows = workflow_worker(
            client, settings, max_cached_workflows=max_cached_workflows
        )
        self._workflows_task: asyncio.Task[None] | None = None
        self._replication = replication
        self._relays: list[str] = []

    @property
    def relays(self) -> list[str]:
        """The workflow ids of the relays this cluster started."""
        return list(self._relays)

    async def __aenter__(self) -> Cluster:
        self._workflows_task = asyncio.create_task(self._workflows.run())
        for region in self.settings.regions:
            self.start(region)
            if self._replication:
                self._relays += await start_relays(self.client, self.settings, region)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for relay in self._relays:
            await self.client.get_workflow_handle(relay).terminate("test over")
        for region in list(self._running):
            await self.stop(region)
        await self._workflows.shutdown()
        if self._workflows_task is not None:
            await self._workflows_task
        await asyncio.to_thread(self._executor.shutdown)
        self.gateway.close()

    def start(self, region: str) -> None:
        worker = activity_worker(
            self.client, self.settings, self.stores[region], self._executor, gateway=self.gateway
        )
        self._running[region] = (worker, asyncio.create_task(worker.run()))

    async def stop(self, region: str) -> None:
        worker, task = self._running.pop(region)
        await worker.shutdown()
        await task

    async def stop_workflows(self) -> None:
        """No saga makes progress until `start_workflows`: what happens meanwhile (timeouts,
        updates) reaches each saga in one workflow task."""
        await self._workflows.shutdown()
        if self._workflows_task is not None:
            await self._workflows_task

    def start_workflows(self) -> None:
        self._workflows = workflow_worker(
            self.client, self.settings, max_cached_workflows=self._max_cached_workflows
        )
        self._workflows_task = asyncio.create_task(self._workflows.run())
