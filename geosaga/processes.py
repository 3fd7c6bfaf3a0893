"""The tools' child processes (the dev stack's, the torture stack's)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from asyncio.subprocess import Process

# Long enough for a worker to finish its in-flight activities' short transactions.
STOP_GRACE_SECONDS = 10.0


async def terminate(process: Process, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, and SIGKILL if the process has not exited within `grace` seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
