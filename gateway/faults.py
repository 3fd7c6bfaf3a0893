"""Faults the gateway injects into its own writes on purpose (docs/gateway.md, "Faults")."""

from __future__ import annotations

import random
from dataclasses import dataclass

from foundation.settings import GatewayFaults


@dataclass(frozen=True)
class Draw:
    """What one write request gets: each fault drawn by its own rate."""

    hang_seconds: float = 0.0
    latency_seconds: float = 0.0
    error: bool = False
    lost_reply: bool = False


class Faults:
    """The faults in force and the draws for them; `seed` restarts the same sequence of
    draws whenever they are set. Drawn on the event loop only, so no lock."""

    def __init__(self, spec: GatewayFaults) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)

    def set(self, spec: GatewayFaults) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)

    def draw(self) -> Draw:
        spec = self.spec
        return Draw(
            hang_seconds=spec.hang_seconds if self._chance(spec.hang_rate) else 0.0,
            latency_seconds=spec.latency_seconds if self._chance(spec.latency_rate) else 0.0,
            error=self._chance(spec.error_rate),
            lost_reply=self._chance(spec.lost_reply_rate),
        )

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
