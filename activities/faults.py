"""Fault injection for chaos tests: an activity interceptor that breaks a region on purpose.

It sits between Temporal and the region's activities, so what it breaks is exactly what
production breaks: the call arrives late, fails before it ran, fails after it ran (the reply is
lost), or stalls past its timeout while Temporal retries it elsewhere in time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from foundation.settings import FaultSpec

log = logging.getLogger(__name__)


class InjectedFault(Exception):
    """A transient failure put there on purpose; the retry policy handles it like any other."""


class FaultInjector(Interceptor):
    def __init__(self, spec: FaultSpec, rng: random.Random | None = None) -> None:
        self._spec = spec
        self._rng = rng or random.Random()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Faulty(next, self._spec, self._rng)


class _Faulty(ActivityInboundInterceptor):
    def __init__(
        self, next: ActivityInboundInterceptor, spec: FaultSpec, rng: random.Random
    ) -> None:
        super().__init__(next)
        self._spec = spec
        self._rng = rng

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        spec, name = self._spec, activity.info().activity_type
        if self._chance(spec.timeout_rate):
            log.warning("injected stall of %ss before %s", spec.timeout_seconds, name)
            await asyncio.sleep(spec.timeout_seconds)
        if self._chance(spec.latency_rate):
            await asyncio.sleep(spec.latency_seconds)
        if self._chance(spec.error_rate):
            raise InjectedFault(f"injected transient database error before {name}")
        result = await self.next.execute_activity(input)
        if self._chance(spec.lost_reply_rate):
            raise InjectedFault(f"injected lost reply after {name} took effect")
        return result

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
