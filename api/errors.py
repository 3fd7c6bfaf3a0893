"""Every error leaves as a JSON 4xx/5xx that says what went wrong; no stack traces."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)

_UNREACHABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)


def field_name(loc: Sequence[Any]) -> str:
    """('body', 'lines', 0, 'sku') → 'lines[0].sku'; ('header', 'idempotency-key') → header."""
    if loc and loc[0] == "header":
        return f"header {'.'.join(str(part) for part in loc[1:])}"
    name = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def invalid(field: Sequence[Any], message: str) -> dict[str, Any]:
    """One validation error in FastAPI's shape, for checks pydantic cannot make alone."""
    return {"loc": tuple(field), "msg": message, "type": "value_error"}


def temporal_unreachable(error: BaseException) -> bool:
    if isinstance(error, RPCError):
        return error.status in _UNREACHABLE
    # A lazy client that cannot connect raises a RuntimeError from the SDK's core.
    return isinstance(error, RuntimeError) and str(error).startswith("Failed client connect")


async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item.get("type")}
        for item in error.errors()
    ]
    message = "; ".join(f"{field_name(d['loc'])}: {d['msg']}" for d in details)
    return JSONResponse(status_code=422, content={"detail": details, "message": message})


def _unavailable(error: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"Temporal is unreachable: {error}"})


async def _rpc_error(_: Request, error: Exception) -> JSONResponse:
    if temporal_unreachable(error):
        return _unavailable(error)
    log.exception("Temporal call failed", exc_info=error)
    return JSONResponse(status_code=502, content={"detail": f"Temporal call failed: {error}"})


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    if temporal_unreachable(error):
        return JSONResponse(
            status_code=503, content={"detail": f"Temporal is unreachable: {error}"}
        )
    log.exception("unhandled error", exc_info=error)
    return JSONResponse(status_code=500, content={"detail": "internal error; see the API log"})


def install(app: FastAPI) -> None:
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(RPCError)(_rpc_error)
    # RuntimeError too: a client that cannot connect raises one, and handlers registered for
    # Exception itself re-raise after answering.
    app.exception_handler(RuntimeError)(_unexpected)
    app.exception_handler(Exception)(_unexpected)
