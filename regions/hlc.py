"""A hybrid logical clock: timestamps that follow wall time yet never run backwards.

Every local write in a region takes `now()`; every event received from another region is
`observe()`d, so a later write always orders after what caused it. Ties are broken by region
name, so any two timestamps from different regions are ordered the same way everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_DRIFT_MS = 60_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, order=True)
class Timestamp:
    wall_ms: int
    logical: int
    region: str

    def encode(self) -> str:
        """A string that sorts as the timestamp does (fixed-width numbers).

        Ten digits of `logical` outlast any run of writes while wall time stands still.
        """
        return f"{self.wall_ms:015d}.{self.logical:010d}.{self.region}"

    @classmethod
    def decode(cls, text: str) -> Timestamp:
        wall, logical, region = text.split(".", 2)
        return cls(int(wall), int(logical), region)


class ClockDriftError(Exception):
    """A remote timestamp is further ahead of this region's wall clock than allowed."""


class HybridLogicalClock:
    def __init__(
        self,
        region: str,
        *,
        physical: Callable[[], int] = wall_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        last: Timestamp | None = None,
    ) -> None:
        self.region = region
        self._physical = physical
        self._max_drift_ms = max_drift_ms
        self._wall = last.wall_ms if last else 0
        self._logical = last.logical if last else 0

    @property
    def last(self) -> Timestamp:
        return Timestamp(self._wall, self._logical, self.region)

    def now(self) -> Timestamp:
        """For a local write: the wall clock, or one tick past the last timestamp if ahead."""
        physical = self._physical()
        if physical > self._wall:
            self._wall, self._logical = physical, 0
        else:
            self._logical += 1
        return self.last

    def observe(self, remote: Timestamp) -> Timestamp:
        """For a received event: a timestamp after both it and everything issued here."""
        physical = self._physical()
        if remote.wall_ms - physical > self._max_drift_ms:
            raise ClockDriftError(
                f"{remote.region}'s clock is {remote.wall_ms - physical} ms ahead of "
                f"{self.region}'s; at most {self._max_drift_ms} ms is accepted"
            )
        wall = max(self._wall, remote.wall_ms, physical)
        if wall == self._wall == remote.wall_ms:
            logical = max(self._logical, remote.logical) + 1
        elif wall == self._wall:
            logical = self._logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self._wall, self._logical = wall, logical
        return self.last
