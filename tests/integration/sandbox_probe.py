"""A test-only workflow that reads the clock, which the sandbox forbids, and runs one activity.

It lives in its own module because the sandbox re-imports the module of every workflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity, workflow


@activity.defn(name="sandbox_probe_echo")
async def echo(text: str) -> str:
    return text.upper()


@workflow.defn(name="SandboxProbe")
class SandboxProbe:
    """Returns the activity's result and what reading the clock did."""

    @workflow.run
    async def run(self, text: str) -> list[str]:
        echoed = await workflow.execute_activity(
            echo, text, start_to_close_timeout=timedelta(seconds=10), summary=f"echo {text}"
        )
        try:
            datetime.now()
            clock = "read the clock"
        except Exception as refused:
            clock = type(refused).__name__
        return [echoed, clock]
