"""After the load: act as the operator until nothing is left to do, or a deadline passes.

Every saga must end (a stuck one helped, a failed or terminated one rerun), replication lag
must be 0 in every region and every dead letter re-driven (which works only once the clocks
are back within the bound). Whatever is still unsettled at the deadline is a violation.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from foundation.settings import Settings
from geosaga.torture.operator import ACTOR, Operator
from geosaga.torture.sagas import SagaRun, latest_runs

DEADLINE_SECONDS = 150.0
# A saga that fails again each time it is rerun is a finding, not something to rerun forever.
MAX_RERUNS = 3
_POLL_SECONDS = 1.0
# Settled means settled this many polls in a row (a relay may be about to ship a batch).
_QUIET_POLLS = 2
# A stuck saga is helped at most this often.
_HELP_EVERY_SECONDS = 3.0


@dataclass
class Settled:
    seconds: float | None
    unsettled: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Replication:
    lag: dict[str, int]
    dead_letters: dict[str, int]

    @property
    def quiet(self) -> bool:
        return not any(self.lag.values()) and not any(self.dead_letters.values())


async def quiesce(
    operator: Operator,
    settings: Settings,
    deadline_seconds: float = DEADLINE_SECONDS,
) -> Settled:
    loop = asyncio.get_running_loop()
    began = loop.time()
    rerun: set[str] = set()
    reruns: Counter[str] = Counter()
    helped: dict[str, float] = {}
    quiet = 0
    while True:
        runs = await latest_runs(operator.temporal, settings)
        for run in runs.values():
            if run.broken and run.run_id not in rerun and reruns[run.order_id] < MAX_RERUNS:
                answer = await operator.rerun(run.order_id)
                if answer.status in (202, 404, 409):  # done, or nothing to rerun
                    rerun.add(run.run_id)
                    reruns[run.order_id] += 1
            if run.needs_attention and loop.time() - helped.get(run.order_id, 0) > (
                _HELP_EVERY_SECONDS
            ):
                helped[run.order_id] = loop.time()
                await operator.help(run.order_id)
        replication = await _replication(operator, settings)
        for region, letters in replication.dead_letters.items():
            if letters:
                await operator.redrive(region)
        open_sagas = [run for run in runs.values() if run.running or run.broken]
        quiet = quiet + 1 if not open_sagas and replication.quiet else 0
        if quiet >= _QUIET_POLLS:
            return Settled(round(loop.time() - began, 1))
        if loop.time() - began > deadline_seconds:
            return Settled(None, _unsettled(open_sagas, replication, reruns, deadline_seconds))
        await asyncio.sleep(_POLL_SECONDS)


async def _replication(operator: Operator, settings: Settings) -> _Replication:
    state = _Replication({}, {})
    for region in settings.regions:
        status = await operator.api.call(ACTOR, "GET", f"/regions/{region}/replication")
        if status.status != 200 or not isinstance(status.answer, dict):
            state.lag[region] = state.dead_letters[region] = -1  # unknown is not quiet
            continue
        state.lag[region] = sum(int(s.get("lag_events", 0)) for s in status.answer["sources"])
        state.dead_letters[region] = int(status.answer.get("dead_letters", 0))
    return state


def _unsettled(
    open_sagas: list[SagaRun], replication: _Replication, reruns: Counter[str], deadline: float
) -> list[dict[str, Any]]:
    rule, after = "settled", f"{deadline:.0f} s after the load stopped"
    found: list[dict[str, Any]] = [
        {
            "rule": rule,
            "detail": f"the saga is still {_state(run)} {after}"
            + (f", rerun {reruns[run.order_id]} times" if reruns[run.order_id] else ""),
            "orders": [run.order_id],
            "where": [],
        }
        for run in open_sagas
    ]
    for region, lag in replication.lag.items():
        if lag:
            detail = f"replication into {region} lags by {lag} events {after}"
            found.append({"rule": rule, "detail": detail, "orders": [], "where": [region]})
    for region, letters in replication.dead_letters.items():
        if letters:
            detail = f"{region} holds {letters} dead letters it could not re-drive {after}"
            found.append({"rule": rule, "detail": detail, "orders": [], "where": [region]})
    return found


def _state(run: SagaRun) -> str:
    if run.running:
        return f"running ({run.status})"
    return run.execution.name.lower() if run.execution else "in an unknown state"
