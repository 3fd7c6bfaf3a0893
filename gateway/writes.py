"""The path of every write: the faults drawn for it, then its operation run once per key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.idempotency import Answer, once, request_digest
from gateway.state import GatewayState

log = logging.getLogger(__name__)

REPLAYED = "Idempotent-Replayed"


async def write(
    request: Request,
    state: GatewayState,
    key: str,
    body: Mapping[str, Any],
    operation: Callable[[Session], Answer],
) -> Response:
    """`body` is the request as it counts for the key (a repeat must ask the same)."""
    where = f"{request.method} {request.url.path} (key {key})"
    draw = state.faults.draw()
    if draw.hang_seconds:
        log.warning("injected fault: holding %s for %ss", where, draw.hang_seconds)
        await asyncio.sleep(draw.hang_seconds)
    if draw.latency_seconds:
        await asyncio.sleep(draw.latency_seconds)
    if draw.error:
        log.warning("injected fault: 503 for %s, nothing written", where)
        return respond(Answer.error(503, "injected fault: the gateway is unavailable; try again"))
    if state.store is None:
        raise RuntimeError("the gateway's store is not open")
    digest = request_digest(request.method, request.url.path, body)
    answer = await run_in_threadpool(once, state.store, key, digest, operation)
    if draw.lost_reply:
        log.warning("injected fault: %s was written, its reply lost", where)
        return respond(Answer.error(502, "injected fault: the reply was lost after the write"))
    return respond(answer)


def respond(answer: Answer) -> Response:
    headers = {REPLAYED: "true"} if answer.replayed else None
    return Response(answer.body, answer.status, headers, media_type="application/json")
