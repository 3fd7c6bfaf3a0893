"""The payment gateway as the payment activities see it: a card processor reached over the
network (activities/gateway_client.py speaks `geosaga gateway`'s API, docs/gateway.md).

A real processor plugs in by implementing `PaymentGateway` against its own API: authorise with
the step's key as merchant reference and idempotency key, cancel by merchant reference (a
"technical cancel", which also voids an authorisation that arrives after it), capture once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class GatewayAuthorisation:
    """An authorisation as the gateway answers it: `status` is `authorised`, `declined`,
    `captured` or `voided` (its reference was cancelled first, or since)."""

    id: str
    reference: str
    status: str
    amount: Decimal
    currency: str
    reason: str | None = None


class GatewayUnavailable(Exception):
    """A transient failure (a 5xx, a timeout, no connection): the same call may succeed later,
    so the activity fails and Temporal retries it with the same key."""


class GatewayRejected(Exception):
    """A permanent refusal of a call (for example capturing a voided authorisation)."""


class PaymentGateway(Protocol):
    """Every call is idempotent on its key, as a real processor's are."""

    def authorise(
        self, reference: str, token: str, amount: Decimal, currency: str
    ) -> GatewayAuthorisation:
        """A hold under `reference` (also its idempotency key)."""
        ...

    def capture(self, authorisation_id: str, amount: Decimal, *, key: str) -> GatewayAuthorisation:
        """Takes `amount` of the hold, once."""
        ...

    def cancel(self, reference: str, *, key: str) -> list[GatewayAuthorisation]:
        """Voids whatever is held under `reference` and whatever arrives under it later."""
        ...
