"""The worker entry point: pins a process to one region.

A region's process polls `region.<name>` for that region's activities (bound to its own store
and gateway) and the shared `orders` queue for workflows, which hold no region state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack

from temporalio.client import Client
from temporalio.worker import Worker

from activities.gateway import PaymentGateway
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.sandbox_gateway import SandboxGateway
from activities.stock import StockActivities
from geosaga.settings import Settings
from geosaga.temporal import connect, ensure_search_attributes
from regions.store import Store
from workflows.order_saga import OrderSaga

# Activities are short database transactions run on threads.
ACTIVITY_THREADS = 32


def activity_worker(
    client: Client,
    settings: Settings,
    store: Store,
    executor: Executor,
    *,
    gateway: PaymentGateway | None = None,
) -> Worker:
    """The region's activities, bound to its store and gateway, on `region.<name>` only."""
    stock = StockActivities(store)
    payments = PaymentActivities(store, gateway or SandboxGateway(store))
    orders = OrderActivities(store)
    return Worker(
        client,
        task_queue=settings.task_queue(store.region),
        activities=[*stock.all(), *payments.all(), *orders.all()],
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
    )


def workflow_worker(
    client: Client, settings: Settings, *, max_cached_workflows: int | None = None
) -> Worker:
    """Saga workflows on the shared `orders` queue (one per process and client).

    `max_cached_workflows=0` makes every workflow task replay the whole history (tests).
    """
    queue = settings.workflow_task_queue
    if max_cached_workflows is None:
        return Worker(client, task_queue=queue, workflows=[OrderSaga])
    return Worker(
        client, task_queue=queue, workflows=[OrderSaga], max_cached_workflows=max_cached_workflows
    )


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        await stop.wait()


async def run_region(settings: Settings, region: str, stop: asyncio.Event) -> None:
    """Runs one region's workers until `stop` is set."""
    if region not in settings.regions:
        raise ValueError(f"unknown region {region!r}; known: {', '.join(settings.regions)}")
    client = await connect(settings)
    await ensure_search_attributes(client)
    store = Store(region, settings.database_url(region))
    store.create_schema()
    try:
        with ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix=region) as executor:
            workers = [
                activity_worker(client, settings, store, executor),
                workflow_worker(client, settings),
            ]
            await run_workers(workers, stop)
    finally:
        store.dispose()
