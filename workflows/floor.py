"""The floor for `geosaga bench`: a saga's shape with activities that do nothing.

Same number of activities, on the same task queues, in the same stages (steps that run in
parallel run in parallel here too), with no database, no gateway, no compensation: what is
left is Temporal's own overhead, which no saga can beat.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contract import ActivityName
    from workflows.contract import FLOOR_WORKFLOW, FloorInput


@workflow.defn(name=FLOOR_WORKFLOW)
class Floor:
    @workflow.run
    async def run(self, shape: FloorInput) -> None:
        for stage in shape.stages:
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        ActivityName.NOOP,
                        task_queue=queue,
                        start_to_close_timeout=timedelta(seconds=30),
                    )
                    for queue in stage
                )
            )
