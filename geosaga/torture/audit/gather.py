"""Reading every source of a run: the client's log, the nemesis log, the gateway's ledger,
every region's store and Temporal. Nothing here judges; the rules do."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from foundation.temporal import connect
from geosaga.torture.audit import requests
from geosaga.torture.audit.evidence import Evidence, LedgerEntry, Saga
from geosaga.torture.audit.faults import read_faults
from geosaga.torture.audit.record import RunRecord
from geosaga.torture.audit.stores import read_regions
from workflows.contract import WORKFLOW_ID_PREFIX, WORKFLOW_NAME, OrderInput, workflow_id
from workflows.order_saga import OrderSaga

_QUERY_TIMEOUT = timedelta(seconds=10)
# Sagas read at once: enough to hide round trips, few enough not to crowd a busy server.
_CONCURRENT_SAGAS = 8


class AuditFailed(Exception):
    """A source could not be read at all; the run cannot be judged."""


async def gather(run: RunRecord) -> Evidence:
    exchanges = requests.read_exchanges(run.client_log)
    redriven = requests.redrives(exchanges)
    prices = await _prices(run, exchanges)
    ledger = await _ledger(run)
    asked = set(requests.submissions(exchanges, run.settings.default_region))
    try:
        client = await connect(run.settings)
        sagas = await _sagas(client, run.settings.workflow_task_queue, asked)
    except (RPCError, RuntimeError) as error:
        address = run.settings.temporal_address
        raise AuditFailed(f"cannot read the sagas from Temporal at {address}: {error}") from error
    try:
        regions = await asyncio.to_thread(read_regions, run, redriven)
    except SQLAlchemyError as error:
        raise AuditFailed(f"cannot read the regions' stores: {error}") from error
    return Evidence(
        exchanges=exchanges,
        faults=read_faults(run.nemesis_log),
        ledger=ledger,
        sagas=sagas,
        regions=regions,
        prices=prices,
        default_region=run.settings.default_region,
        seed_stock=run.seed_stock,
        temporal_grace_seconds=run.temporal_grace_seconds,
    )


async def _prices(run: RunRecord, exchanges: list[requests.Exchange]) -> dict[str, Decimal]:
    """Prices as the client saw them (`GET /catalog`), or asked now if it never looked."""
    products = requests.catalog(exchanges)
    if products is None:
        try:
            async with httpx.AsyncClient(base_url=run.api_url, timeout=30) as http:
                answer = await http.get("/catalog")
                answer.raise_for_status()
        except httpx.HTTPError as error:
            raise AuditFailed(f"cannot read the catalog at {run.api_url}: {error}") from error
        products = answer.json()
    return {str(p["sku"]): Decimal(str(p["unit_price"])) for p in products}


async def _ledger(run: RunRecord) -> list[LedgerEntry]:
    entries: list[LedgerEntry] = []
    headers = {"Authorization": f"Bearer {run.gateway_key}"}
    try:
        async with httpx.AsyncClient(base_url=run.gateway_url, headers=headers, timeout=30) as http:
            after = 0
            while True:
                answer = await http.get("/ledger", params={"after": after, "limit": 1000})
                answer.raise_for_status()
                page = answer.json()["entries"]
                entries += [_entry(entry) for entry in page]
                if not page:
                    return entries
                after = int(page[-1]["seq"])
    except httpx.HTTPError as error:
        raise AuditFailed(f"cannot read the ledger at {run.gateway_url}: {error}") from error


def _entry(entry: Mapping[str, Any]) -> LedgerEntry:
    amount = entry.get("amount")
    return LedgerEntry(
        seq=int(entry["seq"]),
        kind=str(entry["kind"]),
        authorisation_id=entry.get("authorisation_id"),
        reference=str(entry.get("reference") or ""),
        amount=None if amount is None else Decimal(str(amount)),
        idempotency_key=entry.get("idempotency_key"),
    )


async def _sagas(client: Client, task_queue: str, asked: Collection[str]) -> dict[str, Saga]:
    """Every order the client asked for, and every saga of this run Temporal has (a saga no one
    asked for is a finding too); orders Temporal does not know are left out."""
    runs: dict[str, int] = {}
    query = f'WorkflowType = "{WORKFLOW_NAME}" AND TaskQueue = "{task_queue}"'
    async for execution in client.list_workflows(query):
        order_id = execution.id.removeprefix(WORKFLOW_ID_PREFIX)
        runs[order_id] = runs.get(order_id, 0) + 1
    limit = asyncio.Semaphore(_CONCURRENT_SAGAS)

    async def one(order_id: str) -> Saga | None:
        async with limit:
            return await _saga(client, order_id, runs.get(order_id, 1))

    found = await asyncio.gather(*(one(order_id) for order_id in sorted({*asked, *runs})))
    return {saga.order_id: saga for saga in found if saga is not None}


async def _saga(client: Client, order_id: str, runs: int) -> Saga | None:
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    status = description.status or WorkflowExecutionStatus.RUNNING
    state = None
    if status == WorkflowExecutionStatus.COMPLETED:
        state = await handle.result()
    elif status == WorkflowExecutionStatus.RUNNING:
        try:
            state = await handle.query(OrderSaga.state, rpc_timeout=_QUERY_TIMEOUT)
        except (WorkflowQueryFailedError, RPCError):
            state = None  # no worker answered; it has not ended, which is what counts
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [order] = await client.data_converter.decode(started.input.payloads, [OrderInput])
    return Saga(order_id, status.name, state, order, runs)
