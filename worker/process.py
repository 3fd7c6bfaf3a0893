"""The worker entry point: pins a process to one region.

A region's process polls `region.<name>` for that region's activities (bound to its own store,
and calling the payment gateway over HTTP) and the relays into the region, and the shared
`orders` queue for the sagas, which hold no region state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.faults import FaultInjector
from activities.gateway import PaymentGateway
from activities.gateway_client import HttpGateway
from activities.noop import noop
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.replication import ReplicationActivities
from activities.stock import StockActivities
from foundation.settings import Settings
from foundation.temporal import connect, ensure_search_attributes, temporal_unreachable
from regions.store import Store
from regions.unavailable import StoreUnavailable, store_failure
from worker.saga_metrics import SagaMetrics
from worker.sandbox import ContextFreeSandboxRunner, compile_workflow_modules, is_context_free
from workflows.contract import SEARCH_ATTRIBUTES
from workflows.floor import Floor
from workflows.order_saga import OrderSaga
from workflows.relay import Relay
from workflows.relay_contract import RelayInput, relay_id

log = logging.getLogger(__name__)

T = TypeVar("T")

# Activities are short database transactions run on threads.
ACTIVITY_THREADS = 32


def activity_worker(
    client: Client,
    settings: Settings,
    store: Store,
    executor: Executor,
    *,
    gateway: PaymentGateway,
) -> Worker:
    """The region's activities, bound to its store and the payment gateway, on
    `region.<name>` only, and the relays into the region, which apply their batches here as
    local activities."""
    stock = StockActivities(store)
    payments = PaymentActivities(store, gateway)
    orders = OrderActivities(store)
    replication = ReplicationActivities(
        store,
        max_attempts=settings.replication_max_attempts,
        hold_seconds=settings.replication_hold_seconds,
    )
    faults = settings.faults.get(store.region)
    options: dict[str, Any] = {}
    if settings.worker_tuning:
        options["workflow_runner"] = _tuned_runner(client)
    return Worker(
        client,
        task_queue=settings.task_queue(store.region),
        interceptors=[FaultInjector(faults, random.Random(faults.seed))] if faults else [],
        activities=[*stock.all(), *payments.all(), *orders.all(), *replication.all(), noop],
        workflows=[Relay],
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        **options,
    )


def workflow_worker(
    client: Client, settings: Settings, *, max_cached_workflows: int | None = None
) -> Worker:
    """Saga workflows on the shared `orders` queue (one per process and client), and relays
    started there before they moved to their destination's queue (workflows/relay.py).

    `max_cached_workflows=0` makes every workflow task replay the whole history (tests).
    """
    queue = settings.workflow_task_queue
    workflows = [OrderSaga, Relay, Floor]
    # Saga outcomes and step latencies, exported with the SDK's metrics (worker/saga_metrics.py).
    metrics = [SagaMetrics(settings.region_task_queue_prefix)]
    options: dict[str, Any] = {}
    if max_cached_workflows is not None:
        options["max_cached_workflows"] = max_cached_workflows
    if settings.worker_tuning:
        options["workflow_runner"] = _tuned_runner(client)
        compile_workflow_modules(workflows)
    return Worker(client, task_queue=queue, workflows=workflows, interceptors=metrics, **options)


def _tuned_runner(client: Client) -> WorkflowRunner:
    """The SDK's sandbox with its restrictions: clocks, I/O and randomness in workflow code
    raise. Never pass the workflows' own modules through: that lets them read the clock
    unchecked. The sandbox's cost is cut in worker/sandbox.py instead."""
    sandbox = SandboxedWorkflowRunner()
    if is_context_free(client.data_converter):
        return ContextFreeSandboxRunner(sandbox)
    return sandbox


def relays_from(settings: Settings, source: str) -> list[RelayInput]:
    """One relay from `source` to every other region (its own read models are written with
    its events, in the same transaction: activities/region_bound.py)."""
    return [
        RelayInput(
            source=source,
            destination=destination,
            source_queue=settings.task_queue(source),
            destination_queue=settings.task_queue(destination),
            batch_size=settings.replication_batch_size,
            poll_seconds=settings.replication_poll_seconds,
            linger_seconds=settings.replication_linger_seconds,
            settle_seconds=settings.replication_settle_seconds,
        )
        for destination in settings.regions
        if destination != source
    ]


async def start_relays(client: Client, settings: Settings, source: str) -> list[str]:
    """Starts the source's relays unless they already run; returns their workflow ids."""
    await _stop_relay_to_itself(client, settings, source)
    started = []
    for relay in relays_from(settings, source):
        await client.start_workflow(
            Relay.run,
            relay,
            id=relay_id(relay),
            task_queue=relay.destination_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"relay {relay.source} → {relay.destination}",
        )
        started.append(relay_id(relay))
    return started


async def _stop_relay_to_itself(client: Client, settings: Settings, source: str) -> None:
    """Ends the relay from a region to itself that earlier versions ran: redundant now."""
    queue = settings.task_queue(source)
    itself = RelayInput(
        source=source, destination=source, source_queue=queue, destination_queue=queue
    )
    handle = client.get_workflow_handle(relay_id(itself))
    with contextlib.suppress(RPCError):
        await handle.terminate(reason="a region's own read models are written with its events")


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        await stop.wait()


async def _when_temporal_answers(
    call: Callable[[], Awaitable[T]], settings: Settings, stop: asyncio.Event
) -> T | None:
    """Makes a start-up call to Temporal, waiting out a server that is down, restarting or cut
    off (as a worker restarted during an outage must); None if stopped first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await call()
        except (RPCError, RuntimeError) as error:
            if not temporal_unreachable(error):
                raise
            log.warning(
                "Temporal at %s is not reachable (%s); retrying", settings.temporal_address, error
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 10.0)
    return None


async def _store_when_up(store: Store, stop: asyncio.Event) -> bool:
    """Migrates the region's store, waiting out a database that is down or unreachable (as a
    worker restarted during an outage must); False if stopped first."""
    delay = 0.5
    while not stop.is_set():
        try:
            await asyncio.to_thread(store.create_schema)
            return True
        except Exception as error:
            if not isinstance(error, StoreUnavailable) and not store_failure(error):
                raise
            log.warning("the %s store is not reachable (%s); retrying", store.region, error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 10.0)
    return False


async def run_region(settings: Settings, region: str, stop: asyncio.Event) -> None:
    """Runs one region's workers until `stop` is set."""
    if region not in settings.regions:
        raise ValueError(f"unknown region {region!r}; known: {', '.join(settings.regions)}")
    # First: production without a gateway key refuses to start (ConfigurationError).
    gateway = HttpGateway.from_settings(settings)
    try:
        await _serve_region(settings, region, gateway, stop)
    finally:
        gateway.close()


async def _serve_region(
    settings: Settings, region: str, gateway: PaymentGateway, stop: asyncio.Event
) -> None:
    client = await _when_temporal_answers(lambda: connect(settings), settings, stop)
    if client is None:
        return
    registered = _when_temporal_answers(
        lambda: ensure_search_attributes(client, SEARCH_ATTRIBUTES), settings, stop
    )
    if await registered is None:
        return
    store = Store(
        region, settings.database_url(region), timeout_seconds=settings.store_timeout_seconds
    )
    if not await _store_when_up(store, stop):
        store.dispose()
        return
    if settings.replication:
        relays = _when_temporal_answers(
            lambda: start_relays(client, settings, region), settings, stop
        )
        if await relays is None:
            store.dispose()
            return
    try:
        with ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix=region) as executor:
            workers = [
                activity_worker(client, settings, store, executor, gateway=gateway),
                workflow_worker(client, settings),
            ]
            await run_workers(workers, stop)
    finally:
        store.dispose()
