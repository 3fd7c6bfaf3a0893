"""The nemesis log as the checker reads it: when Temporal was down, whose clock was skewed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geosaga.torture.schedule import Kind
from regions.hlc import DEFAULT_MAX_DRIFT_MS


@dataclass(frozen=True)
class Fault:
    """One line of nemesis.jsonl: what was done, to what, and when (run seconds)."""

    kind: str
    target: str
    started_at: float
    # None: the fault was still on when the log ended.
    ended_at: float | None
    params: Mapping[str, Any]
    note: str | None = None

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Fault:
        ended = line.get("ended_at")
        return cls(
            kind=str(line["kind"]),
            target=str(line.get("target") or ""),
            started_at=float(line["started_at"]),
            ended_at=None if ended is None else float(ended),
            params=dict(line.get("params") or {}),
            note=line.get("note"),
        )


def read_faults(path: Path) -> list[Fault]:
    """Every fault carried out; a run without a nemesis log had none. A line torn by a killed
    harness (the last one) is skipped."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    faults = []
    for number, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            faults.append(Fault.of(json.loads(text)))
        except (ValueError, KeyError, TypeError):
            if number < len(lines) - 1:
                raise ValueError(f"{path}:{number + 1} is not a fault: {text[:200]}") from None
    return faults


@dataclass(frozen=True, order=True)
class Window:
    """A span of run time, in seconds; `end` is infinite for one that never closed."""

    start: float
    end: float

    def overlaps(self, start: float, end: float) -> bool:
        return start <= self.end and self.start <= end


def merge(windows: Iterable[Window]) -> list[Window]:
    """The same spans of time as few windows as possible, sorted and disjoint."""
    merged: list[Window] = []
    for window in sorted(windows):
        if merged and window.start <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def temporal_down(faults: Iterable[Fault], grace: float) -> list[Window]:
    """When Temporal was down: from its kill until its frontend answered again, plus `grace`
    (the API's client reconnects)."""
    return merge(
        Window(fault.started_at, math.inf if fault.ended_at is None else fault.ended_at + grace)
        for fault in faults
        if fault.kind == Kind.TEMPORAL_KILL
    )


# What keeps a region's worker from serving sagas: it is dead, stopped, or cut off from Temporal.
_WORKER_DOWN = (Kind.WORKER_KILL, Kind.WORKER_PAUSE, Kind.TEMPORAL_CUT)


def every_worker_hit(
    faults: Iterable[Fault], regions: Iterable[str], start: float, end: float | None, grace: float
) -> bool:
    """Whether every region's worker was down at some time while a request waited (each fault
    counted `grace` longer: a worker back up reconnects, and a saga's task waits out its
    sticky queue's timeout before another worker takes it). A saga then had no worker to
    answer it: the pool of workers was down, as Temporal itself can be."""
    hit = {
        fault.target
        for fault in faults
        if fault.kind in _WORKER_DOWN
        and Window(
            fault.started_at, math.inf if fault.ended_at is None else fault.ended_at + grace
        ).overlaps(start, start if end is None else end)
    }
    wanted = set(regions)
    return bool(wanted) and wanted <= hit


def covered(windows: Iterable[Window], start: float, end: float | None) -> bool:
    """Whether a request sent at `start` and answered at `end` met one of the windows."""
    return any(window.overlaps(start, start if end is None else end) for window in windows)


def offset_ms(fault: Fault) -> int:
    value = fault.params.get("offset_ms", 0)
    return int(value) if isinstance(value, int | float) else 0


def skewed_beyond_bound(faults: Iterable[Fault]) -> set[str]:
    """Regions whose clock was once skewed further than the HLC accepts: their events, or the
    events they received, were dead-lettered by design until the clock came back."""
    return {
        fault.target
        for fault in faults
        if fault.kind in (Kind.CLOCK_SKEW, Kind.CLOCK_SKEW_BEYOND)
        and abs(offset_ms(fault)) > DEFAULT_MAX_DRIFT_MS
    }
