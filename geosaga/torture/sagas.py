"""This run's sagas as Temporal's visibility lists them: the latest run of each order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client, WorkflowExecutionStatus

from foundation.settings import Settings
from geosaga.torture.clientlog import Exchange
from regions.values import SagaStatus
from workflows.contract import SAGA_REASON, SAGA_STATUS, WORKFLOW_ID_PREFIX, WORKFLOW_NAME

RERUNNABLE = (
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
)


@dataclass(frozen=True)
class SagaRun:
    order_id: str
    run_id: str
    execution: WorkflowExecutionStatus | None
    status: str | None
    reason: str | None
    started: datetime | None

    @property
    def running(self) -> bool:
        return self.execution == WorkflowExecutionStatus.RUNNING

    @property
    def broken(self) -> bool:
        """Failed or terminated: a person reruns it."""
        return self.execution in RERUNNABLE

    @property
    def needs_attention(self) -> bool:
        return self.running and self.status == SagaStatus.NEEDS_ATTENTION


async def latest_runs(client: Client, settings: Settings) -> dict[str, SagaRun]:
    """Every saga of this run's task queue, by order id: its newest run (a reset or a rerun
    starts another run under the same workflow id)."""
    query = f"WorkflowType = '{WORKFLOW_NAME}' AND TaskQueue = '{settings.workflow_task_queue}'"
    latest: dict[str, SagaRun] = {}
    async for execution in client.list_workflows(query):
        attributes = execution.typed_search_attributes
        run = SagaRun(
            order_id=execution.id.removeprefix(WORKFLOW_ID_PREFIX),
            run_id=execution.run_id,
            execution=execution.status,
            status=attributes.get(SAGA_STATUS),
            reason=attributes.get(SAGA_REASON),
            started=execution.start_time,
        )
        seen = latest.get(run.order_id)
        if seen is None or (run.started and seen.started and run.started > seen.started):
            latest[run.order_id] = run
    return latest


def outcomes(runs: dict[str, SagaRun], exchanges: Iterable[Exchange]) -> dict[str, int]:
    """Orders per outcome: how each saga ended, or why an order the client sent has none."""
    answers: dict[str, list[int | None]] = {}
    for exchange in exchanges:
        key = exchange.headers.get("Idempotency-Key")
        if key and exchange.method == "POST" and exchange.path.startswith("/"):
            answers.setdefault(key, []).append(exchange.status)
    counts: Counter[str] = Counter()
    for order_id in answers.keys() | runs.keys():
        run = runs.get(order_id)
        if run is None:
            statuses = answers.get(order_id, [])
            counts["never started (answer lost)" if None in statuses else "refused"] += 1
        elif run.running:
            counts[f"still running ({run.status})"] += 1
        elif run.execution == WorkflowExecutionStatus.COMPLETED:
            counts[f"{run.status} ({run.reason})" if run.reason else str(run.status)] += 1
        else:
            counts[f"workflow {run.execution.name.lower() if run.execution else 'unknown'}"] += 1
    return dict(sorted(counts.items()))
