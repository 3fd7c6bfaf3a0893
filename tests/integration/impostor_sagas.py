"""Test-only workflows registered as "OrderSaga" that take a different code path.

Replaying a recorded saga history against one of them must fail as nondeterministic. They live
in their own module because the replayer's sandbox re-imports the module of every workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from regions.values import SagaStatus
    from workflows.contract import SAGA_STATUS, WORKFLOW_NAME, OrderInput

_RUN_LIMIT = timedelta(seconds=30)


@workflow.defn(name=WORKFLOW_NAME)
class ShipsBeforeCheckingStock:
    """Opens like the saga (status upsert), then schedules an activity the saga never does."""

    @workflow.run
    async def run(self, order: OrderInput) -> None:
        workflow.upsert_search_attributes([SAGA_STATUS.value_set(SagaStatus.RUNNING.value)])
        await workflow.execute_activity(
            "ship_parcel",
            order.order_id,
            task_queue=order.regions[order.home_region],
            start_to_close_timeout=_RUN_LIMIT,
        )


@workflow.defn(name=WORKFLOW_NAME)
class SkipsTheStatusUpsert:
    """Goes straight to the stock check, without the saga's opening status upsert."""

    @workflow.run
    async def run(self, order: OrderInput) -> None:
        await workflow.execute_activity(
            "check_stock",
            order.order_id,
            task_queue=order.regions[order.home_region],
            start_to_close_timeout=_RUN_LIMIT,
        )
