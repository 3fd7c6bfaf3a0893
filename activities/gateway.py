"""The payment gateway interface the payment activities talk to."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class GatewayAuthorisation:
    approved: bool
    ref: str | None = None
    decline_reason: str | None = None


class GatewayUnavailable(Exception):
    """A transient failure: the same call may succeed later, so the activity retries."""


class GatewayRejected(Exception):
    """A permanent refusal of a call (for example capturing a voided authorisation)."""


class PaymentGateway(Protocol):
    """Every call is idempotent on its key or reference, as real gateways are."""

    def authorise(
        self, *, key: str, token: str, amount: Decimal, currency: str
    ) -> GatewayAuthorisation: ...

    def void(self, ref: str) -> None: ...

    def capture(self, ref: str, amount: Decimal) -> str: ...
