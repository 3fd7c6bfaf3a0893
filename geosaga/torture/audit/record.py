"""What the checker is given (where a run's evidence is) and what it answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.settings import Settings

# The rules, in the order the report lists them.
RULES = (
    "accepted",
    "captured-once",
    "compensated-clean",
    "conservation",
    "no-reservation-after-end",
    "once",
    "convergence",
    "no-5xx",
)


@dataclass(frozen=True)
class RunRecord:
    """A finished run: its folder and how to reach what it left behind.

    `settings` gives the Temporal address, namespace and payload keys (the client comes from
    foundation.temporal.connect), the saga task queue (which sagas are this run's), the default
    region of cart requests without `X-Region` and the cart removal window. `seed_stock` is
    stock the harness set straight in the stores (not through the API, so not in the client
    log) before the workload began: region → SKU → on hand.
    """

    folder: Path
    api_url: str
    gateway_url: str
    gateway_key: str
    stores: Mapping[str, str]
    settings: Settings
    seed_stock: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # A 503 this long after Temporal answered again is still its outage (the API reconnects).
    temporal_grace_seconds: float = 5.0

    @property
    def client_log(self) -> Path:
        return self.folder / "client.jsonl"

    @property
    def nemesis_log(self) -> Path:
        return self.folder / "nemesis.jsonl"


@dataclass(frozen=True)
class Violation:
    """One broken promise: its rule, what was seen, and the orders (or region/SKU, cart,
    region pair, request) it concerns."""

    rule: str
    detail: str
    orders: tuple[str, ...] = ()
    where: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "detail": self.detail,
            "orders": list(self.orders),
            "where": list(self.where),
        }


@dataclass
class AuditReport:
    """Every violation, and counts for the report: orders per outcome, requests per status."""

    violations: list[Violation] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def of(self, rule: str) -> list[Violation]:
        return [violation for violation in self.violations if violation.rule == rule]

    def as_json(self) -> dict[str, Any]:
        return {
            "violations": [violation.as_json() for violation in self.violations],
            "outcomes": dict(sorted(self.outcomes.items())),
            "requests": dict(sorted(self.requests.items())),
        }
