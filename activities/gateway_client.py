"""`HttpGateway`: the payment gateway over HTTP (docs/gateway.md), one pooled client per
worker process, shared by its activity threads.

It never retries on its own: a 5xx, a timeout or a lost connection raises GatewayUnavailable
and Temporal retries the activity, which sends the same Idempotency-Key, so a write the
gateway made before its answer was lost is answered again instead of made twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from activities.gateway import GatewayAuthorisation, GatewayRejected, GatewayUnavailable
from foundation.security import gateway_key
from foundation.settings import Settings

CONNECT_SECONDS = 2.0
# Activities run on up to 32 threads per region worker (worker/process.py), and tests run
# every region's worker in one process.
MAX_CONNECTIONS = 128


class HttpGateway:
    def __init__(self, url: str, key: str, *, timeout_seconds: float) -> None:
        self._url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout_seconds, connect=CONNECT_SECONDS),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=32),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpGateway:
        """Raises foundation.security.ConfigurationError in production without a gateway key."""
        return cls(
            settings.gateway_url,
            gateway_key(settings),
            timeout_seconds=settings.gateway_timeout_seconds,
        )

    def authorise(
        self, reference: str, token: str, amount: Decimal, currency: str
    ) -> GatewayAuthorisation:
        body = {"reference": reference, "token": token, "amount": str(amount), "currency": currency}
        return _authorisation(self._post("/authorisations", body, key=reference))

    def capture(self, authorisation_id: str, amount: Decimal, *, key: str) -> GatewayAuthorisation:
        answer = self._post(
            f"/authorisations/{authorisation_id}/capture", {"amount": str(amount)}, key=key
        )
        return _authorisation(answer)

    def cancel(self, reference: str, *, key: str) -> list[GatewayAuthorisation]:
        answer = self._post("/cancels", {"reference": reference}, key=key)
        return [_authorisation(item) for item in answer["authorisations"]]

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TimeoutException as error:
            raise GatewayUnavailable(f"the gateway did not answer POST {path} in time") from error
        except httpx.TransportError as error:
            raise GatewayUnavailable(
                f"cannot reach the gateway at {self._url}: {error!r}"
            ) from error
        said = f"the gateway answered POST {path} with {response.status_code}: {_detail(response)}"
        if response.status_code >= 500:
            raise GatewayUnavailable(said)
        if response.status_code in (401, 403):
            # Our key is wrong: a configuration to fix, meanwhile the activity waits and retries.
            raise GatewayUnavailable(f"{said} (check GEOSAGA_GATEWAY_API_KEY)")
        if response.status_code >= 400:
            raise GatewayRejected(said)
        answer: dict[str, Any] = response.json()
        return answer


def _authorisation(body: dict[str, Any]) -> GatewayAuthorisation:
    return GatewayAuthorisation(
        id=body["id"],
        reference=body["reference"],
        status=body["status"],
        amount=Decimal(body["amount"]),
        currency=body["currency"],
        reason=body.get("reason"),
    )


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
