"""The checker's one entry point: read every source, apply every rule, count the outcomes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from geosaga.torture.audit.answers import no_5xx
from geosaga.torture.audit.convergence import convergence
from geosaga.torture.audit.evidence import Evidence
from geosaga.torture.audit.gather import gather
from geosaga.torture.audit.once import once
from geosaga.torture.audit.orders import accepted, captured_once, compensated_clean
from geosaga.torture.audit.record import AuditReport, RunRecord, Violation
from geosaga.torture.audit.stock import conservation, no_reservation_after_end
from regions.values import SagaStatus

RULES: tuple[Callable[[Evidence], list[Violation]], ...] = (
    accepted,
    captured_once,
    compensated_clean,
    conservation,
    no_reservation_after_end,
    once,
    convergence,
    no_5xx,
)


async def audit(run: RunRecord) -> AuditReport:
    """Judges a finished run; raises AuditFailed when a source cannot be read at all."""
    return judge(await gather(run))


def judge(evidence: Evidence) -> AuditReport:
    violations = [violation for rule in RULES for violation in rule(evidence)]
    return AuditReport(violations, outcomes(evidence), requests(evidence))


def outcomes(evidence: Evidence) -> dict[str, int]:
    """Orders per outcome; an order is its Idempotency-Key."""
    counts: Counter[str] = Counter()
    for order_id in sorted(evidence.submissions.keys() | evidence.sagas.keys()):
        sent = evidence.submissions.get(order_id, [])
        saga = evidence.sagas.get(order_id)
        if saga is not None and sent and all(s.exchange.lost for s in sent):
            counts["answer lost, started"] += 1
        if saga is None:
            if any(s.exchange.status == 202 for s in sent):
                counts["accepted, no saga"] += 1
            elif any(s.exchange.lost for s in sent):
                counts["answer lost, never started"] += 1
            else:
                counts["refused"] += 1
        elif saga.status == SagaStatus.COMPLETED:
            counts["completed"] += 1
        elif saga.status == SagaStatus.COMPENSATED and saga.state is not None:
            resolved = ", resolved" if saga.state.resolutions else ""
            counts[f"compensated: {saga.state.reason}{resolved}"] += 1
        elif saga.execution == "RUNNING":
            counts[f"not ended: {saga.state.status if saga.state else 'running'}"] += 1
        else:
            counts[f"not ended: {saga.execution.lower()}"] += 1
    return dict(counts)


def requests(evidence: Evidence) -> dict[str, int]:
    """Requests per answer status ("lost" when the answer never came)."""
    return dict(Counter("lost" if e.lost else str(e.status) for e in evidence.exchanges))
