"""Saga outcome counters and step latency histograms, recorded by the workflow itself.

Why here: the saga is the one place that knows for certain how an order ended and how long
each step took as the saga saw it (from scheduling the activity to its result, retries
included). The SDK's workflow metric meter is replay-safe — nothing is recorded while a
worker replays history, so a saga evicted from the cache and replayed is not counted twice —
and it is exported with the SDK's own metrics by the worker's runtime, for Prometheus to
scrape from every worker (sum across workers for the totals). Reading outcomes back from the
stores or visibility instead would cost the API a query per scrape and could not see step
latencies at all.

A worker interceptor, so the saga's code stays as it is: it wraps the workflow's run for the
outcome and every activity it starts for the latency.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from workflows.contract import WORKFLOW_NAME

OUTCOMES = "geosaga_saga_outcomes"
STEP_DURATION = "geosaga_saga_step_duration_seconds"
NO_REASON = "none"


class SagaMetrics(Interceptor):
    """Counts every saga's outcome (`status`, `reason`) and times every step (`step` is the
    activity, `region` the region whose queue ran it, `result` ok, error or cancelled)."""

    def __init__(self, region_task_queue_prefix: str) -> None:
        self._prefix = region_task_queue_prefix

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return type("SagaMetricsInbound", (_Inbound,), {"region_prefix": self._prefix})


def _is_saga() -> bool:
    return workflow.info().workflow_type == WORKFLOW_NAME


class _Inbound(WorkflowInboundInterceptor):
    region_prefix = ""

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound, self.region_prefix))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if not _is_saga():
            return await super().execute_workflow(input)
        outcomes = workflow.metric_meter().create_counter(
            OUTCOMES, "Sagas ended, by status and reason"
        )
        try:
            result = await super().execute_workflow(input)
        except FailureError:
            # The workflow fails (a failure, not a workflow task error or an eviction).
            outcomes.add(1, {"status": "failed", "reason": NO_REASON})
            raise
        # Inside the sandbox the result's class is the sandbox's own copy: read it by name.
        status = getattr(result, "status", None)
        reason = getattr(result, "reason", None)
        outcomes.add(
            1,
            {
                "status": str(status) if status is not None else "unknown",
                "reason": str(reason) if reason is not None else NO_REASON,
            },
        )
        return result


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, region_prefix: str) -> None:
        super().__init__(next)
        self._region_prefix = region_prefix

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        handle = super().start_activity(input)
        if not _is_saga():
            return handle
        durations = workflow.metric_meter().create_histogram_timedelta(
            STEP_DURATION,
            "Saga steps from scheduling to result, retries included, by step, region and result",
            unit="duration",
        )
        queue = input.task_queue or ""
        labels = {
            "step": input.activity,
            "region": queue.removeprefix(self._region_prefix) if queue else "workflow",
        }
        started = workflow.now()

        def record(done: asyncio.Future[Any]) -> None:
            if done.cancelled():
                result = "cancelled"
            else:
                result = "error" if done.exception() is not None else "ok"
            durations.record(workflow.now() - started, {**labels, "result": result})

        handle.add_done_callback(record)
        return handle
