"""The fault schedule, drawn from the seed alone: the same seed (store and minutes) always
gives the same schedule; the minutes scale how many faults it holds."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from regions.hlc import DEFAULT_MAX_DRIFT_MS

Store = Literal["sqlite", "postgres"]
REGIONS = ("us-east", "eu-west", "ap-south")

# The stack's timing (stack.py sets it), which some faults must outlast.
ACTIVITY_TIMEOUT_SECONDS = 3.0
GATEWAY_TIMEOUT_SECONDS = 2.5
# SQLite writers wait this long for a lock (regions/store.py); a held lock stays well below it.
SQLITE_BUSY_SECONDS = 30.0
# A skew beyond the bound holds the region's events back elsewhere (or dead-letters them)
# until its clock is back within it, for up to the skew's excess after it ends: such skews
# only in runs this long, which leave time for it.
BEYOND_BOUND_MIN_MINUTES = 3.0


class Kind(StrEnum):
    WORKER_KILL = "worker-kill"
    WORKER_PAUSE = "worker-pause"
    API_KILL = "api-kill"
    TEMPORAL_KILL = "temporal-kill"
    TEMPORAL_CUT = "temporal-cut"
    STORE_CUT = "store-cut"
    CLOCK_SKEW = "clock-skew"
    CLOCK_SKEW_BEYOND = "clock-skew-beyond"
    GATEWAY_FAULTS = "gateway-faults"
    PG_TERMINATE = "pg-terminate"


# How long each fault lasts, in seconds (a kill: until the restart).
DURATIONS: dict[Kind, tuple[float, float]] = {
    Kind.WORKER_KILL: (0.5, 4.0),
    Kind.WORKER_PAUSE: (ACTIVITY_TIMEOUT_SECONDS + 1.0, ACTIVITY_TIMEOUT_SECONDS + 6.0),
    Kind.API_KILL: (0.2, 2.0),
    Kind.TEMPORAL_KILL: (1.0, 4.0),
    Kind.TEMPORAL_CUT: (3.0, 10.0),
    Kind.STORE_CUT: (4.0, 12.0),
    Kind.CLOCK_SKEW: (5.0, 20.0),
    Kind.CLOCK_SKEW_BEYOND: (5.0, 15.0),
    Kind.GATEWAY_FAULTS: (5.0, 15.0),
    Kind.PG_TERMINATE: (1.0, 3.0),
}
_WEIGHTS: dict[Kind, int] = {
    Kind.WORKER_KILL: 3,
    Kind.WORKER_PAUSE: 2,
    Kind.API_KILL: 2,
    Kind.TEMPORAL_KILL: 1,
    Kind.TEMPORAL_CUT: 2,
    Kind.STORE_CUT: 2,
    Kind.CLOCK_SKEW: 2,
    Kind.CLOCK_SKEW_BEYOND: 1,
    Kind.GATEWAY_FAULTS: 2,
    Kind.PG_TERMINATE: 2,
}
INSIDE_BOUND_MS = (1_000, 5_000)
BEYOND_BOUND_MS = (DEFAULT_MAX_DRIFT_MS + 5_000, DEFAULT_MAX_DRIFT_MS + 30_000)
# Faults start this far apart, and none before the workload has begun.
_GAP_SECONDS = (1.5, 4.5)
_FIRST_SECONDS = (1.0, 3.0)


@dataclass(frozen=True)
class Fault:
    at: float
    kind: Kind
    target: str
    duration: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ends(self) -> float:
        return self.at + self.duration

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind.value,
            "target": self.target,
            "duration": self.duration,
            "params": self.params,
        }


def kinds_for(store: Store, minutes: float) -> list[Kind]:
    """The kinds a run may hold: PostgreSQL backends only on PostgreSQL, beyond-bound skews
    only in long runs."""
    return [
        kind
        for kind in Kind
        if (kind != Kind.PG_TERMINATE or store == "postgres")
        and (kind != Kind.CLOCK_SKEW_BEYOND or minutes >= BEYOND_BOUND_MIN_MINUTES)
    ]


def draw(
    seed: int, minutes: float, store: Store, regions: tuple[str, ...] = REGIONS
) -> list[Fault]:
    """Faults a few seconds apart across the run, each ending before it does; faults on one
    resource (a region's worker, store or clock; the API; Temporal; the gateway) never overlap."""
    rng = random.Random(f"torture-schedule/{seed}")
    window = minutes * 60.0
    kinds = kinds_for(store, minutes)
    weights = [_WEIGHTS[kind] for kind in kinds]
    busy_until: dict[str, float] = {}
    faults: list[Fault] = []
    at = rng.uniform(*_FIRST_SECONDS)
    while True:
        kind = rng.choices(kinds, weights)[0]
        low, high = DURATIONS[kind]
        if at + low > window:
            break
        duration = round(min(rng.uniform(low, high), window - at), 2)
        targets = [
            t for t in _targets(kind, regions) if busy_until.get(_resource(kind, t), 0) <= at
        ]
        if targets:
            target = rng.choice(targets)
            busy_until[_resource(kind, target)] = at + duration
            faults.append(Fault(round(at, 2), kind, target, duration, _params(kind, store, rng)))
        at += rng.uniform(*_GAP_SECONDS)
    return faults


def _targets(kind: Kind, regions: tuple[str, ...]) -> list[str]:
    if kind == Kind.API_KILL:
        return ["api"]
    if kind == Kind.TEMPORAL_KILL:
        return ["temporal"]
    if kind == Kind.GATEWAY_FAULTS:
        return ["gateway"]
    return list(regions)


def _resource(kind: Kind, target: str) -> str:
    """What a fault holds: two faults on one resource would undo each other's work."""
    if kind in (Kind.WORKER_KILL, Kind.WORKER_PAUSE, Kind.TEMPORAL_CUT):
        return f"worker:{target}"
    if kind in (Kind.STORE_CUT, Kind.PG_TERMINATE):
        return f"store:{target}"
    if kind in (Kind.CLOCK_SKEW, Kind.CLOCK_SKEW_BEYOND):
        return f"clock:{target}"
    return target


def _params(kind: Kind, store: Store, rng: random.Random) -> dict[str, Any]:
    if kind == Kind.CLOCK_SKEW:
        return {"offset_ms": rng.choice((-1, 1)) * rng.randint(*INSIDE_BOUND_MS)}
    if kind == Kind.CLOCK_SKEW_BEYOND:
        return {"offset_ms": rng.choice((-1, 1)) * rng.randint(*BEYOND_BOUND_MS)}
    if kind == Kind.STORE_CUT:
        # SQLite has no connection to cut: the harness holds the database's write lock instead.
        return {"how": "proxy" if store == "postgres" else "write-lock"}
    if kind == Kind.PG_TERMINATE:
        return {"every_seconds": 0.25}
    if kind == Kind.GATEWAY_FAULTS:
        return {
            "latency_rate": round(rng.uniform(0.0, 0.3), 2),
            "latency_seconds": round(rng.uniform(0.1, 0.5), 2),
            "error_rate": round(rng.uniform(0.0, 0.2), 2),
            "lost_reply_rate": round(rng.uniform(0.0, 0.2), 2),
            "hang_rate": round(rng.uniform(0.0, 0.05), 3),
            # Past the workers' gateway timeout, so the write lands after they gave up.
            "hang_seconds": round(GATEWAY_TIMEOUT_SECONDS + rng.uniform(0.5, 2.5), 2),
            "seed": rng.randint(0, 2**31 - 1),
        }
    return {}


def activity_faults(seed: int, regions: tuple[str, ...] = REGIONS) -> dict[str, dict[str, Any]]:
    """What every region's worker breaks in its own activities for the whole run (the
    workers' fault injector, `GEOSAGA_FAULTS`): a late start, a transient database error, a
    reply lost after the step's transaction committed, a stall past the activity timeout."""
    rng = random.Random(f"torture-activity-faults/{seed}")
    return {
        region: {
            "latency_rate": round(rng.uniform(0.02, 0.1), 3),
            "latency_seconds": 0.3,
            "error_rate": round(rng.uniform(0.01, 0.05), 3),
            "lost_reply_rate": round(rng.uniform(0.01, 0.05), 3),
            "timeout_rate": round(rng.uniform(0.0, 0.02), 3),
            "timeout_seconds": ACTIVITY_TIMEOUT_SECONDS + 1.0,
            "seed": rng.randrange(2**31),
        }
        for region in regions
    }
