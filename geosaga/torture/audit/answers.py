"""The rule `no-5xx`: no request got a 5xx, except a 503 while Temporal was down: its server,
or, for a request the saga itself must answer (a cancel, a retry, a resolve), every worker
that runs sagas."""

from __future__ import annotations

import re

from geosaga.torture.audit.evidence import Evidence
from geosaga.torture.audit.faults import covered, every_worker_hit, temporal_down
from geosaga.torture.audit.record import Violation


def no_5xx(evidence: Evidence) -> list[Violation]:
    down = temporal_down(evidence.faults, evidence.temporal_grace_seconds)
    found = []
    for exchange in evidence.exchanges:
        if exchange.status is None or exchange.status < 500:
            continue
        if exchange.status == 503 and covered(down, exchange.sent_at, exchange.answered_at):
            continue
        if (
            exchange.status == 503
            and _ANSWERED_BY_THE_SAGA.match(exchange.route)
            and every_worker_hit(
                evidence.faults,
                evidence.regions,
                exchange.sent_at,
                exchange.answered_at,
                evidence.temporal_grace_seconds,
            )
        ):
            continue
        order_id = exchange.order_id()
        found.append(
            Violation(
                "no-5xx",
                f"{exchange.label()} ({exchange.actor}, sent at {exchange.sent_at:.2f} s) got "
                f"{exchange.status}: {_brief(exchange.answer)}",
                (order_id,) if order_id else (),
                (f"{exchange.method} {exchange.route}",),
            )
        )
    return found


# Requests that are workflow updates: only a worker running the saga can answer them.
_ANSWERED_BY_THE_SAGA = re.compile(r"^/orders/[^/]+/(cancel|compensations/retry|resolve)$")


def _brief(answer: object) -> str:
    text = answer.get("detail", answer) if isinstance(answer, dict) else answer
    return str(text)[:200]
