"""The rule `once`: no idempotency key had two effects, in the outbox, at the gateway, or in
Temporal (one saga per Idempotency-Key, and the answers under a key say so)."""

from __future__ import annotations

from collections import Counter

from geosaga.torture.audit.evidence import Evidence, LedgerEntry
from geosaga.torture.audit.record import Violation
from geosaga.torture.audit.requests import Request, Submission, reruns

# Effects each step makes once per order and region, whatever its retries.
ONCE_PER_ORDER_AND_REGION = (
    "StockReserved",
    "ReservationRejected",
    "StockReleased",
    "StockCommitted",
    "PaymentAuthorised",
    "PaymentDeclined",
    "PaymentCaptured",
    "PaymentVoided",
    "OrderEnded",
)


def once(evidence: Evidence) -> list[Violation]:
    return [*_outbox(evidence), *_ledger(evidence), *_sagas(evidence), *_answers(evidence)]


def _outbox(evidence: Evidence) -> list[Violation]:
    found = []
    for region in evidence.regions.values():
        seen = Counter(
            (event.event_type, event.aggregate_id)
            for event in region.outbox
            if event.event_type in ONCE_PER_ORDER_AND_REGION
        )
        for (event_type, order_id), times in sorted(seen.items()):
            if times > 1:
                found.append(
                    Violation(
                        "once",
                        f"{region.name} published {event_type} {times} times for {order_id}",
                        (order_id,),
                        (region.name,),
                    )
                )
    return found


def _ledger(evidence: Evidence) -> list[Violation]:
    by_reference: dict[str, list[LedgerEntry]] = {}
    captures: Counter[str] = Counter()
    for entry in evidence.ledger:
        by_reference.setdefault(entry.reference, []).append(entry)
        if entry.kind == "captured" and entry.authorisation_id:
            captures[entry.authorisation_id] += 1
    found = []
    for reference, entries in sorted(by_reference.items()):
        orders = (entries[0].order_id,) if entries[0].order_id else ()
        authorisations = sorted({e.authorisation_id for e in entries if e.authorisation_id})
        decisions = [e for e in entries if e.kind in ("authorised", "declined")]
        if len(authorisations) > 1 or len(decisions) > 1:
            found.append(
                Violation(
                    "once",
                    f"reference {reference} has {len(authorisations)} authorisations "
                    f"({', '.join(authorisations)}) and {len(decisions)} decisions",
                    orders,
                )
            )
        for authorisation in authorisations:
            if captures[authorisation] > 1:
                found.append(
                    Violation(
                        "once",
                        f"authorisation {authorisation} ({reference}) was captured "
                        f"{captures[authorisation]} times",
                        orders,
                    )
                )
    return found


def _sagas(evidence: Evidence) -> list[Violation]:
    """A key's saga runs once, and once more for each rerun the operator asked for."""
    asked = reruns(evidence.exchanges)
    return [
        Violation(
            "once",
            f"{order_id} has {saga.runs} saga runs; the operator asked for "
            f"{asked.get(order_id, 0)} reruns",
            (order_id,),
        )
        for order_id, saga in sorted(evidence.sagas.items())
        if saga.runs > 1 + asked.get(order_id, 0)
    ]


def _answers(evidence: Evidence) -> list[Violation]:
    """Under one key: its saga's order is one the client sent; every 202 names the key and
    came for that body; the same body is never refused 409 once it was accepted."""
    found = []
    for order_id, sent in sorted(evidence.submissions.items()):
        saga = evidence.sagas.get(order_id)
        if saga is None or saga.order is None:
            continue
        wanted = Request.of_input(saga.order)
        if not any(s.request == wanted for s in sent):
            found.append(
                Violation("once", f"{order_id}'s saga runs an order no request sent", (order_id,))
            )
        for submission in sent:
            problem = _answer_problem(submission, wanted, sent)
            if problem:
                found.append(
                    Violation(
                        "once", f"{order_id}: {submission.exchange.label()} {problem}", (order_id,)
                    )
                )
    return found


def _answer_problem(submission: Submission, wanted: Request, sent: list[Submission]) -> str | None:
    exchange = submission.exchange
    if exchange.status == 202:
        answer = exchange.answer if isinstance(exchange.answer, dict) else {}
        if answer.get("order_id") != submission.order_id:
            return f"was answered 202 naming order {answer.get('order_id')!r}"
        if submission.request != wanted:
            return "was answered 202 for a body other than its saga's"
    if exchange.status == 409 and submission.request == wanted:
        accepted_before = any(
            s.exchange.status == 202
            and s.request == wanted
            and s.exchange.answered_at is not None
            and s.exchange.answered_at < exchange.sent_at
            for s in sent
        )
        if accepted_before:
            return "was answered 409 though the same body was accepted before"
    return None
