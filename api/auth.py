"""API keys: `Authorization: Bearer <key>` on writes, operator calls and the codec endpoint.

Keys come from settings (foundation/security.py); several may be valid at once so that they can
rotate, and a key is compared in constant time against every one of them. Reads (GET) need a
key only when `GEOSAGA_AUTH_READS` is on; /healthz and /metrics never do (their routers are
included without this dependency).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.schemas import ErrorBody
from foundation.security import api_keys, codec_trusts_ui_origin, key_matches, ui_origin
from foundation.settings import Settings

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description=(
        "One of GEOSAGA_API_KEYS (`geosaga dev`: the development key it prints). Required on "
        "every POST, PUT and DELETE and on the codec endpoint; on GETs only when "
        "GEOSAGA_AUTH_READS is true."
    ),
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
# What a route that needs a key may answer, for its OpenAPI `responses`.
UNAUTHORISED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "No valid API key: send `Authorization: Bearer <key>`",
        "headers": {
            "WWW-Authenticate": {
                "description": "The Bearer challenge",
                "schema": {"type": "string"},
            }
        },
    }
}


@dataclass(frozen=True)
class ApiAuth:
    """What the API checks requests against; built once, when the app is created."""

    keys: tuple[str, ...]
    auth_reads: bool
    ui_origin: str
    trust_ui_origin: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiAuth:
        """Raises ConfigurationError when the settings may not serve (production, no keys)."""
        auth = cls(
            keys=api_keys(settings),
            auth_reads=settings.auth_reads,
            ui_origin=ui_origin(settings),
            trust_ui_origin=codec_trusts_ui_origin(settings),
        )
        if auth.trust_ui_origin and settings.environment == "production":
            log.warning(
                "GEOSAGA_CODEC_TRUST_UI_ORIGIN is on in production: any client that sends "
                "Origin: %s may decode payloads without a key",
                auth.ui_origin,
            )
        return auth

    def accepts(self, credentials: HTTPAuthorizationCredentials | None) -> bool:
        return credentials is not None and key_matches(credentials.credentials, self.keys)


async def _auth(request: Request) -> ApiAuth:
    auth: ApiAuth = request.app.state.auth
    return auth


AuthDep = Annotated[ApiAuth, Depends(_auth)]


def unauthorised(credentials: HTTPAuthorizationCredentials | None) -> HTTPException:
    if credentials is None:
        detail = "this endpoint needs an API key: send Authorization: Bearer <key>"
        challenge = 'Bearer realm="geosaga"'
    else:
        detail = "the API key sent in Authorization is not valid"
        challenge = 'Bearer realm="geosaga", error="invalid_token"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


async def require_key(request: Request, credentials: Credentials, auth: AuthDep) -> None:
    """Writes and operator calls need a valid key; reads only when auth_reads is on."""
    if request.method in READ_METHODS and not auth.auth_reads:
        return
    if not auth.accepts(credentials):
        raise unauthorised(credentials)


async def require_codec_access(request: Request, credentials: Credentials, auth: AuthDep) -> None:
    """A valid key, or (when trusted) a request the browser sent from the Web UI's origin.

    The Temporal Web UI calls the codec endpoint straight from the operator's browser and can
    send no key of ours (the dev server's UI sends no credentials at all). A browser sets
    `Origin` itself and a page cannot forge it, so in development a request from the UI's
    origin is let through; any other client can send that header, which is why production
    trusts it only when told to (README, "Authentication and encrypted payloads").
    """
    if auth.accepts(credentials):
        return
    if auth.trust_ui_origin and request.headers.get("origin") == auth.ui_origin:
        return
    raise unauthorised(credentials)


RequireKey = Annotated[None, Depends(require_key)]
RequireCodecAccess = Annotated[None, Depends(require_codec_access)]
