"""What every request of one gateway process shares, and the dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.faults import Faults
from gateway.store import GatewayStore


@dataclass
class GatewayState:
    key: str
    faults: Faults
    # Opened by the app's lifespan.
    store: GatewayStore | None = None


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _store(state: Annotated[GatewayState, Depends(_state)]) -> GatewayStore:
    if state.store is None:
        raise RuntimeError("the gateway's store is not open (the app's lifespan has not run)")
    return state.store


StateDep = Annotated[GatewayState, Depends(_state)]
StoreDep = Annotated[GatewayStore, Depends(_store)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Names the write: a repeat with the same request gets its first answer",
    ),
]
