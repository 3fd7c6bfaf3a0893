"""Acting on a saga after it started: cancel it, help a stuck one along, or run it again."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    ResetActivityRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from foundation.settings import Settings
from orders.errors import NotAnswered, Refused
from orders.sagas import describe, order_input_of, search_attributes, status_of
from workflows.contract import (
    CancelRequest,
    ResolveRequest,
    RetryCompensationRequest,
    workflow_id,
)
from workflows.order_saga import OrderSaga
from workflows.trace import saga_summary

_UPDATE_TIMEOUT = timedelta(seconds=25)
_UPDATE_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
_RERUNNABLE = (
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
)


@dataclass(frozen=True)
class Rerun:
    action: Literal["reset", "restarted"]
    run_id: str


async def cancel(client: Client, order_id: str, requested_by: str | None) -> str:
    return await _update(
        client, order_id, OrderSaga.cancel, CancelRequest(requested_by=requested_by)
    )


async def retry_compensation(client: Client, order_id: str, requested_by: str | None) -> str:
    request = RetryCompensationRequest(requested_by=requested_by)
    return await _update(client, order_id, OrderSaga.retry_compensation, request)


async def resolve(client: Client, order_id: str, resolved_by: str, note: str) -> str:
    request = ResolveRequest(resolved_by=resolved_by, note=note)
    return await _update(client, order_id, OrderSaga.resolve, request)


async def _update(client: Client, order_id: str, update: Any, request: BaseModel) -> str:
    """Sends an update; sends it again when the server aborted it unapplied.

    The server aborts an update whose workflow task failed, even for the benign
    UnhandledCommand failure (new events arrived while the workflow tried to finish); the
    update never reached the workflow, so sending it again is safe.
    """
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    retries = iter(_UPDATE_RETRY_DELAYS)
    while True:
        try:
            result = await handle.execute_update(update, request, rpc_timeout=_UPDATE_TIMEOUT)
            return str(result.message)
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise NotAnswered(
                f"the saga did not answer within {_UPDATE_TIMEOUT.seconds} s (its workers may be "
                "down); the request may still take effect: read the order before sending it again"
            ) from None
        except WorkflowUpdateFailedError as refused:
            cause = refused.cause
            raise Refused(
                cause.message if isinstance(cause, ApplicationError) else str(cause)
            ) from None
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                status = status_of(await describe(handle))
                raise Refused(f"the order has already finished ({status})") from None
            delay = next(retries, None)
            if delay is None or not _workflow_not_ready(error):
                raise
        await asyncio.sleep(delay)


async def redispatch_pending(client: Client, workflow: str, run_id: str) -> None:
    """Has Temporal dispatch (or time out) the steps the reset run inherited in flight.

    A reset run takes over the activities its history left scheduled, and the dev server
    (1.32) did not always dispatch them or fire their timeouts again: an activity whose
    task had not gone out before the saga was terminated stayed pending in the new run for
    good (seen under `geosaga torture`). Resetting each such activity (an experimental API)
    makes the server look at it afresh: it runs, or its passed timeout fires and the saga
    moves on as for any timed-out step.
    """
    execution = WorkflowExecution(workflow_id=workflow, run_id=run_id)
    described = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(namespace=client.namespace, execution=execution)
    )
    for pending in described.pending_activities:
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED:
            continue
        try:
            await client.workflow_service.reset_activity(
                ResetActivityRequest(
                    namespace=client.namespace, execution=execution, id=pending.activity_id
                )
            )
        except RPCError as error:
            # It ended between the two calls (the new run is already under way): nothing to do.
            if error.status != RPCStatusCode.NOT_FOUND:
                raise


def _workflow_not_ready(error: RPCError) -> bool:
    if error.status != RPCStatusCode.FAILED_PRECONDITION or error.grpc_status is None:
        return False
    return any(d.type_url.endswith("WorkflowNotReadyFailure") for d in error.grpc_status.details)


async def rerun(client: Client, settings: Settings, order_id: str, reason: str) -> Rerun:
    """Runs a failed or terminated saga again.

    Reset, when the run completed at least one workflow task: Temporal replays the run up to
    its last completed task and carries on from there in a new run, so steps already taken
    are not taken again. Otherwise (it never got that far) a fresh run with the same input.
    Either way the steps' idempotency keys come from the workflow id, which both runs share:
    a step the old run took returns its first outcome instead of reserving or charging twice.
    """
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    description = await describe(handle)
    if description.status not in _RERUNNABLE:
        state = (
            "is still running"
            if description.status == WorkflowExecutionStatus.RUNNING
            else (f"finished as {status_of(description)}")
        )
        raise Refused(f"only a failed or terminated saga can be rerun; this one {state}")
    last_good = None
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_good = event.event_id
    if last_good is not None:
        response = await client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(
                    workflow_id=handle.id, run_id=description.run_id
                ),
                reason=reason,
                workflow_task_finish_event_id=last_good,
                request_id=str(uuid.uuid4()),
            )
        )
        await redispatch_pending(client, handle.id, response.run_id)
        return Rerun("reset", response.run_id)
    order = await order_input_of(client, handle)
    started = await client.start_workflow(
        OrderSaga.run,
        order,
        id=handle.id,
        task_queue=settings.workflow_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=search_attributes(order),
        memo=await description.memo(),
        static_summary=saga_summary(order),
    )
    return Rerun("restarted", started.result_run_id or "")
