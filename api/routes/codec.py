"""The remote codec endpoint of the Temporal Web UI and CLI: `POST /codec/decode` and `/encode`.

The UI (and `temporal --codec-endpoint`) post `{"payloads": [...]}` in protobuf JSON (metadata
values and data in base64) with an `X-Namespace` header, straight from the operator's browser,
so the UI's origin gets CORS. `geosaga dev` points the dev server's `--ui-codec-endpoint` here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from api.auth import UNAUTHORISED, RequireCodecAccess
from api.errors import BAD_INPUT, JSON_BODY, require_json
from api.schemas import ErrorBody
from foundation.codec import DecryptionError, EncryptionCodec
from orders.errors import invalid

PREFIX = "/codec"
CORS_HEADERS = ("Authorization", "Content-Type", "X-Namespace")

router = APIRouter(prefix=PREFIX, tags=["codec"], dependencies=[Depends(require_json)])


# Protobuf JSON's bytes: standard or URL-safe base64, padded or not.
Base64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/_-]*={0,2}$")]


class WirePayload(BaseModel):
    """A payload in protobuf JSON: metadata values and data are base64. Protobuf knows no
    other fields, so neither does this (an unknown one is a 422 naming it)."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Base64] = Field(
        default_factory=dict, examples=[{"encoding": "anNvbi9wbGFpbg=="}]
    )
    data: Base64 = Field(default="", examples=["InRva19vayI="])
    externalPayloads: list[dict[str, Any]] | None = None  # noqa: N815 (protobuf JSON's name)


class WirePayloads(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payloads: list[WirePayload]


Namespace = Annotated[
    str | None,
    Header(alias="X-Namespace", description="The namespace the payloads come from (the UI's)"),
]
_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "a payload cannot be decrypted"},
    **UNAUTHORISED,
    **BAD_INPUT,
    **JSON_BODY,
}


@router.post("/decode", response_model=WirePayloads, responses=_RESPONSES)
async def decode(
    body: WirePayloads, request: Request, _: RequireCodecAccess, namespace: Namespace = None
) -> JSONResponse:
    """Decrypts payloads sealed by the codec; others come back as they are."""
    codec = _codec(request)
    payloads = _parse(body)
    try:
        decoded = await codec.decode(payloads)
    except DecryptionError as error:
        raise HTTPException(400, f"cannot decode: {error}") from None
    return _answer(decoded)


@router.post("/encode", response_model=WirePayloads, responses=_RESPONSES)
async def encode(
    body: WirePayloads, request: Request, _: RequireCodecAccess, namespace: Namespace = None
) -> JSONResponse:
    """Encrypts payloads with the current payload key (the UI uses it to send input)."""
    return _answer(await _codec(request).encode(_parse(body)))


def serves(path: str) -> bool:
    """Whether a request path is the codec endpoint's."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def _codec(request: Request) -> EncryptionCodec:
    codec: EncryptionCodec = request.app.state.codec
    return codec


def _parse(body: WirePayloads) -> list[Payload]:
    parsed: list[Payload] = []
    for position, payload in enumerate(body.payloads):
        try:
            parsed.append(json_format.ParseDict(payload.model_dump(exclude_none=True), Payload()))
        except json_format.ParseError as error:
            field = ("body", "payloads", position)
            raise RequestValidationError([invalid(field, f"not a payload: {error}")]) from None
    return parsed


def _answer(payloads: list[Payload]) -> JSONResponse:
    wire = json_format.MessageToDict(Payloads(payloads=payloads))
    return JSONResponse({"payloads": wire.get("payloads", [])})


class CodecCORS:
    """CORS for the codec endpoint only, for the Web UI's origin: the browser's preflight
    (Authorization, Content-Type and X-Namespace headers) and the headers on every answer,
    errors included. Credentials are allowed, for a UI set to include them."""

    def __init__(self, app: ASGIApp, origin: str) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=[origin],
            allow_methods=["POST"],
            allow_headers=list(CORS_HEADERS),
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and serves(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
