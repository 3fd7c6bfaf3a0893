"""`Authorization: Bearer <key>` on every endpoint but /healthz (the key: foundation.security)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from foundation.security import key_matches
from gateway.schemas import ErrorBody
from gateway.state import StateDep

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="GatewayKey",
    description="GEOSAGA_GATEWAY_API_KEY (development: geosaga-local-gateway-key)",
)
UNAUTHORISED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid key: send `Authorization: Bearer <key>`"}
}


async def require_key(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None or not key_matches(credentials.credentials, (state.key,)):
        said = "is not valid" if credentials else "is missing: send Authorization: Bearer <key>"
        raise HTTPException(
            401, f"the gateway key {said}", headers={"WWW-Authenticate": 'Bearer realm="gateway"'}
        )
