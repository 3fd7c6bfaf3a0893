"""The independent checker of a torture run. It trusts no single table of the service: it reads
the client's own log, the nemesis log, the gateway's ledger, every region's store and Temporal,
and holds them against each other (record.RULES names the rules; the task and docs say what
each asserts).

How the harness calls it, after quiescence (the signature stays as it is)::

    from geosaga.torture.audit import RunRecord, audit

    report = await audit(
        RunRecord(
            folder=run_folder,  # client.jsonl, nemesis.jsonl
            api_url=api_url,  # for GET /catalog when the client never read it
            gateway_url=gateway_url,
            gateway_key=gateway_key,
            stores={"us-east": "sqlite:///…/us-east.db", ...},  # region → SQLAlchemy URL
            settings=settings,  # Temporal address, namespace, payload keys, saga task queue
            seed_stock={},  # stock set straight in the stores, outside the client log
        )
    )
    report.ok  # no violation
    report.violations  # [Violation(rule, detail, orders, where)], every one names what it concerns
    report.outcomes  # orders per outcome: {"completed": 12, "compensated: out_of_stock": 3, ...}
    report.requests  # requests per answer status: {"202": 40, "409": 2, "lost": 1, ...}
    report.as_json()

`audit` raises AuditFailed when a source cannot be read at all (the gateway is down, say).
From the nemesis log it reads `temporal-kill` faults (Temporal down from `started_at` until
`ended_at`, plus `temporal_grace_seconds`) and `clock-skew`/`clock-skew-beyond` faults with
`params.offset_ms` (beyond regions.hlc.DEFAULT_MAX_DRIFT_MS explains dead letters).
"""

from geosaga.torture.audit.checker import audit, judge
from geosaga.torture.audit.gather import AuditFailed
from geosaga.torture.audit.record import RULES, AuditReport, RunRecord, Violation

__all__ = ["RULES", "AuditFailed", "AuditReport", "RunRecord", "Violation", "audit", "judge"]
