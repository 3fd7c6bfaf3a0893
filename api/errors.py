"""Every error leaves as a JSON 4xx/5xx that says what went wrong; no stack traces."""

from __future__ import annotations

import email.message
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.service import RPCError

from api.schemas import ErrorBody, ValidationErrorBody
from foundation.temporal import temporal_unreachable
from orders.errors import (
    EmptyCart,
    IdempotencyConflict,
    InvalidRequest,
    NotAnswered,
    OrderNotFound,
    Refused,
)
from regions.unavailable import StoreUnavailable

log = logging.getLogger(__name__)

# OpenAPI `responses` of the answers below: a 422 says `message` too (FastAPI's default does
# not), a route that takes a body may answer 413 and 415, and one that calls Temporal 502 or
# 503.
BAD_INPUT: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody, "description": "Bad input; `message` names the fields"}
}
JSON_BODY: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The request body is over the limit"},
    415: {"model": ErrorBody, "description": "The request body is not sent as JSON"},
}
TEMPORAL_ERRORS: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorBody, "description": "Temporal answered with an error"},
    503: {
        "model": ErrorBody,
        "description": "Temporal is unreachable, or the saga's workers did not answer in time",
    },
}

STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "The region's store is unreachable or timed out"}
}


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


async def require_json(request: Request) -> None:
    """A route's body must come as JSON: with another Content-Type, or none, FastAPI leaves it
    unread and the 422 would be about its shape; this says what is wrong instead."""
    media = request.headers.get("content-type")
    if media is None and not _has_body(request):
        return  # and the 422 says the body is missing
    message = email.message.Message()
    message["content-type"] = media or ""
    subtype = message.get_content_subtype()
    if message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    ):
        return
    said = f"not {media!r}" if media else "none was sent"
    raise HTTPException(415, f"Content-Type must be application/json; {said}")


def _has_body(request: Request) -> bool:
    return (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )


async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item.get("type")}
        for item in error.errors()
    ]
    message = "; ".join(_said(item) for item in error.errors())
    return JSONResponse(status_code=422, content={"detail": details, "message": message})


def _said(item: Mapping[str, Any]) -> str:
    loc = list(item.get("loc", ()))
    # FastAPI locates malformed JSON at ("body", <character>): name the body, and say why.
    if item.get("type") == "json_invalid" and loc[1:] and isinstance(loc[1], int):
        reason = (item.get("ctx") or {}).get("error", "")
        return f"body: {item.get('msg', '')}: {reason} at character {loc[1]}"
    return f"{field_name(loc)}: {item.get('msg', '')}"


async def _http_error(request: Request, error: HTTPException) -> Response:
    # FastAPI answers a JSON body that the parser gives up on with a bare 400; it is malformed
    # JSON like any other, and answered as such.
    if error.status_code == 400 and (reason := _unparsable(error.__cause__)):
        detail = {"loc": ("body",), "msg": f"JSON decode error: {reason}", "type": "json_invalid"}
        return await _validation_error(request, RequestValidationError([detail]))
    # Starlette's 405 names the methods of the one route it matched; `Allow` must name every
    # method the path serves (GET and POST /orders are two routes).
    if error.status_code == 405 and (allowed := _allowed_methods(request)):
        error = HTTPException(
            405, error.detail, headers={**(error.headers or {}), "Allow": allowed}
        )
    # No route matched: say which path that was (an id with a `/` in it, say, or `%2F`).
    if error.status_code == 404 and "endpoint" not in request.scope:
        error = HTTPException(404, f"no route serves {request.url.path!r}", headers=error.headers)
    # A body that turns out longer than the limit as it arrives (chunked, or longer than its
    # Content-Length said); DeclaredBodyLimit answers the ones that say so up front.
    if error.status_code == 413 and (limit := request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)):
        error = HTTPException(413, too_large(limit), headers=error.headers)
    return await http_exception_handler(request, error)


def _unparsable(cause: BaseException | None) -> str | None:
    """Why `json.loads` gave up, when it raised something other than a JSONDecodeError."""
    if isinstance(cause, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(cause, RecursionError):
        return "nested too deeply"
    if isinstance(cause, ValueError):  # Python's limit on the digits of an int
        return "a number has too many digits"
    return None


def _allowed_methods(request: Request) -> str:
    methods: set[str] = set()
    for path, operations in request.app.openapi()["paths"].items():
        if _path_pattern(path).match(request.url.path):
            methods.update(method.upper() for method in operations)
    return ", ".join(sorted(methods))


@functools.cache
def _path_pattern(path: str) -> re.Pattern[str]:
    pattern, _, _ = compile_path(path)
    return pattern


def too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit} bytes"


class DeclaredBodyLimit:
    """Answers a request whose Content-Length is over its route's limit with a JSON 413,
    before anything reads the body. FastAPI's `max_body_size` counts a body as it arrives, and
    its 413 is JSON; but for one whose Content-Length is over, Starlette sends a text/plain
    413 of its own whatever the app answers, so this must run outside the whole app."""

    def __init__(self, app: ASGIApp, limit: Callable[[str], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            limit = self.limit(scope["path"])
            if declared.isdigit() and int(declared) > limit:
                response = JSONResponse({"detail": too_large(limit)}, status_code=413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _unavailable(error: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"Temporal is unreachable: {error}"})


async def _rpc_error(_: Request, error: Exception) -> JSONResponse:
    if temporal_unreachable(error):
        return _unavailable(error)
    log.exception("Temporal call failed", exc_info=error)
    return JSONResponse(status_code=502, content={"detail": f"Temporal call failed: {error}"})


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InvalidRequest)
    return await _validation_error(request, RequestValidationError(error.problems))


async def _order_not_found(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": f"no order {str(error)!r}"})


async def _conflict(_: Request, error: Exception) -> JSONResponse:
    """The key's first body, a cart with nothing in it, a saga past the point of the request."""
    return JSONResponse(status_code=409, content={"detail": str(error)})


async def _not_answered(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503, content={"detail": str(error)}, headers={"Retry-After": "5"}
    )


async def _store_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("%s", error)
    return JSONResponse(status_code=503, content={"detail": str(error)})


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    if temporal_unreachable(error):
        return JSONResponse(
            status_code=503, content={"detail": f"Temporal is unreachable: {error}"}
        )
    log.exception("unhandled error", exc_info=error)
    return JSONResponse(status_code=500, content={"detail": "internal error; see the API log"})


def install(app: FastAPI) -> None:
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(RPCError)(_rpc_error)
    app.exception_handler(StoreUnavailable)(_store_unavailable)
    app.exception_handler(InvalidRequest)(_invalid_request)
    app.exception_handler(OrderNotFound)(_order_not_found)
    for conflict in (IdempotencyConflict, EmptyCart, Refused):
        app.exception_handler(conflict)(_conflict)
    app.exception_handler(NotAnswered)(_not_answered)
    # RuntimeError too: a client that cannot connect raises one, and handlers registered for
    # Exception itself re-raise after answering.
    app.exception_handler(RuntimeError)(_unexpected)
    app.exception_handler(Exception)(_unexpected)
