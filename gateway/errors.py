"""Every error is JSON `{"detail": "..."}` that says what was wrong; bad input names the field."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.idempotency import Refused

log = logging.getLogger(__name__)

_SOURCES = ("body", "query", "path", "header")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Refused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def field_name(loc: Sequence[Any]) -> str:
    """('body', 'amount') → 'amount'; ('header', 'Idempotency-Key') → 'Idempotency-Key'."""
    parts = list(loc[1:] if loc and loc[0] in _SOURCES else loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _said(item: Mapping[str, Any]) -> str:
    loc = list(item.get("loc", ()))
    if item.get("type") == "json_invalid":
        return f"body: {item.get('msg', 'not JSON')}"
    return f"{field_name(loc)}: {item.get('msg', '')}"


async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
    detail = "; ".join(_said(item) for item in error.errors())
    return JSONResponse(status_code=422, content={"detail": detail})


async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse(
        status_code=error.status_code, content={"detail": str(error.detail)}, headers=error.headers
    )


async def _refused(_: Request, error: Refused) -> JSONResponse:
    """A refusal outside a keyed write (the console's)."""
    return JSONResponse(status_code=error.answer.status, content=json.loads(error.answer.body))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse(status_code=500, content={"detail": "the gateway failed; see its log"})
