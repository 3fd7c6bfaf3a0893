"""The nemesis: carries the fault schedule out against the stack, at the scheduled times, and
writes what it actually did, and when, to `nemesis.jsonl`.

Every fault undoes itself when its time is up, or at once when the run heals everything
(quiesce): a killed process is started again, a paused one continued, a cut healed, a skew
zeroed, the gateway's faults turned off, a held lock released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import Engine

from geosaga.torture import postgres
from geosaga.torture.clientlog import ClientLog
from geosaga.torture.schedule import Fault, Kind
from geosaga.torture.stack import Stack

log = logging.getLogger(__name__)

# The API is killed while a request is in flight when one is within this long.
_MID_REQUEST_WAIT_SECONDS = 2.0


@dataclass
class Done:
    """One line of nemesis.jsonl."""

    kind: str
    target: str
    started_at: float
    ended_at: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    # When the schedule had it (on the run's clock, like started_at).
    scheduled_at: float | None = None


class Nemesis:
    def __init__(
        self,
        stack: Stack,
        schedule: list[Fault],
        path: Path,
        requests: ClientLog,
        origin: float = 0.0,
    ) -> None:
        """Fault times count from `origin` on the run's clock (the client log's)."""
        self.stack = stack
        self.schedule = schedule
        self.clock = requests.now
        self.requests = requests
        self.origin = origin
        self.done: list[Done] = []
        self.problems: list[str] = []
        self._file: IO[str] = path.open("a", buffering=1)
        self._tasks: list[asyncio.Task[None]] = []
        self._admin: Engine | None = None
        self._gateway = httpx.AsyncClient(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {stack.gateway_key}"},
            timeout=10,
        )

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._carry_out(fault)) for fault in self.schedule]

    async def heal(self) -> None:
        """Ends every fault now: those still to come are left out, running ones undone."""
        if self._file.closed:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._gateway.aclose()
        if self._admin is not None:
            self._admin.dispose()
        self._file.close()

    async def _carry_out(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, self.origin + fault.at - self.clock()))
        done = Done(fault.kind.value, fault.target, self.clock(), params=fault.params)
        done.scheduled_at = round(self.origin + fault.at, 3)
        try:
            await _FAULTS[fault.kind](self, fault, done)
        except asyncio.CancelledError:
            done.note = (done.note + "; ended early by the heal").lstrip("; ")
            raise
        except Exception as error:
            done.note = (done.note + f"; the harness failed to carry it out: {error!r}").lstrip(
                "; "
            )
            self.problems.append(f"{fault.kind} {fault.target} at {fault.at}: {error!r}")
            log.exception("fault %s failed", fault)
        finally:
            if done.ended_at is None:
                done.ended_at = self.clock()
            self._record(done)

    def _record(self, done: Done) -> None:
        self.done.append(done)
        self._file.write(json.dumps(done.__dict__) + "\n")

    # The faults, each undoing itself in its `finally` ------------------------------------------

    async def _worker_kill(self, fault: Fault, done: Done) -> None:
        name = f"worker-{fault.target}"
        done.note = f"pid {self.stack.pid(name)} SIGKILL"
        await self.stack.kill(name)
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await self.stack.spawn(name)
            done.ended_at = self.clock()
            done.note += f"; restarted as pid {self.stack.pid(name)}"

    async def _worker_pause(self, fault: Fault, done: Done) -> None:
        name = f"worker-{fault.target}"
        self.stack.pause(name)
        done.note = f"pid {self.stack.pid(name)} SIGSTOP"
        try:
            await asyncio.sleep(fault.duration)
        finally:
            self.stack.resume(name)
            done.ended_at = self.clock()
            done.note += "; SIGCONT"

    async def _api_kill(self, fault: Fault, done: Done) -> None:
        asked = self.clock()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.requests.busy.wait(), _MID_REQUEST_WAIT_SECONDS)
        done.started_at = self.clock()
        waited = done.started_at - asked
        done.note = (
            f"SIGKILL with {self.requests.in_flight} requests in flight (waited {waited:.2f} s)"
        )
        await self.stack.kill("api")
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await self.stack.spawn("api")
            done.ended_at = self.clock()
            done.note += "; restarted on the same port"

    async def _temporal_kill(self, fault: Fault, done: Done) -> None:
        await self.stack.kill("temporal")
        done.note = "SIGKILL; down until its frontend answered again"
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await self.stack.spawn("temporal")
            await self.stack.until_temporal_serves()
            done.ended_at = self.clock()

    async def _temporal_cut(self, fault: Fault, done: Done) -> None:
        reset = await self.stack.proxies.cut(f"temporal-{fault.target}")
        done.note = f"worker's proxy to Temporal refuses; {reset} connections reset"
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await self.stack.proxies.heal(f"temporal-{fault.target}")
            done.ended_at = self.clock()

    async def _store_cut(self, fault: Fault, done: Done) -> None:
        if self.stack.store == "postgres":
            reset = await self.stack.proxies.cut(f"store-{fault.target}")
            done.note = f"worker's proxy to PostgreSQL refuses; {reset} connections reset"
            try:
                await asyncio.sleep(fault.duration)
            finally:
                await self.stack.proxies.heal(f"store-{fault.target}")
                done.ended_at = self.clock()
            return
        release = threading.Event()
        path = self.stack.sqlite_path(fault.target)
        holder = asyncio.ensure_future(
            asyncio.to_thread(_hold_write_lock, path, release, fault.duration)
        )
        try:
            waited = await asyncio.shield(holder)
            done.note = f"BEGIN IMMEDIATE held (took {waited:.2f} s to get)"
        finally:
            release.set()
            await holder
            done.ended_at = self.clock()

    async def _clock_skew(self, fault: Fault, done: Done) -> None:
        offset = int(fault.params["offset_ms"])
        await asyncio.to_thread(_write_skew, self.stack.skew_dir, fault.target, offset)
        done.note = f"{fault.target}'s clock {offset:+d} ms"
        try:
            await asyncio.sleep(fault.duration)
        finally:
            await asyncio.to_thread(_write_skew, self.stack.skew_dir, fault.target, 0)
            done.ended_at = self.clock()

    async def _gateway_faults(self, fault: Fault, done: Done) -> None:
        (await self._gateway.put("/faults", json=fault.params)).raise_for_status()
        done.note = "PUT /faults"
        try:
            await asyncio.sleep(fault.duration)
        finally:
            # The gateway is never killed, but a request can still fail: try a few times.
            for attempt in range(5):
                try:
                    (await self._gateway.put("/faults", json={})).raise_for_status()
                    break
                except httpx.HTTPError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5)
            done.ended_at = self.clock()
            done.note += "; PUT /faults {}"

    async def _pg_terminate(self, fault: Fault, done: Done) -> None:
        database = self.stack.databases[fault.target]
        if self._admin is None:
            self._admin = postgres.admin()
        admin = self._admin
        terminated = rounds = 0
        until = self.clock() + fault.duration
        try:
            while self.clock() < until:
                terminated += await asyncio.to_thread(
                    postgres.terminate_busy_backends, admin, database
                )
                rounds += 1
                await asyncio.sleep(float(fault.params.get("every_seconds", 0.25)))
        finally:
            done.note = (
                f"{terminated} non-idle backends of {database} terminated in {rounds} rounds"
            )


_FAULTS: dict[Kind, Callable[[Nemesis, Fault, Done], Awaitable[None]]] = {
    Kind.WORKER_KILL: Nemesis._worker_kill,
    Kind.WORKER_PAUSE: Nemesis._worker_pause,
    Kind.API_KILL: Nemesis._api_kill,
    Kind.TEMPORAL_KILL: Nemesis._temporal_kill,
    Kind.TEMPORAL_CUT: Nemesis._temporal_cut,
    Kind.STORE_CUT: Nemesis._store_cut,
    Kind.CLOCK_SKEW: Nemesis._clock_skew,
    Kind.CLOCK_SKEW_BEYOND: Nemesis._clock_skew,
    Kind.GATEWAY_FAULTS: Nemesis._gateway_faults,
    Kind.PG_TERMINATE: Nemesis._pg_terminate,
}


def _hold_write_lock(path: Path, release: threading.Event, seconds: float) -> float:
    """Takes the SQLite database's write lock as a writer would, holds it, lets go; returns
    how long taking it took (other writers may hold it briefly)."""
    asked = time.monotonic()
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        waited = time.monotonic() - asked
        release.wait(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()
    return waited


def _write_skew(folder: Path, region: str, offset_ms: int) -> None:
    """A whole new file renamed into place: a reader never sees half of it."""
    temporary = folder / f".{region}.tmp"
    temporary.write_text(f"{offset_ms}\n")
    os.replace(temporary, folder / region)
