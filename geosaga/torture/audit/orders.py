"""The rules about orders: none lost (`accepted`), the completed charged once at their catalog
total with exactly their allocations (`captured-once`), the compensated left clean
(`compensated-clean`)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from geosaga.torture.audit.evidence import Evidence, Saga
from geosaga.torture.audit.record import Violation
from geosaga.torture.audit.requests import Request
from regions.values import SagaStatus


def accepted(evidence: Evidence) -> list[Violation]:
    found = []
    asked = evidence.submissions
    for order_id, sent in asked.items():
        saga = evidence.sagas.get(order_id)
        if saga is not None:
            problem = unfinished(saga)
            if problem:
                found.append(_accepted(f"{order_id} {problem}", order_id))
            continue
        if any(s.exchange.status == 202 for s in sent):
            found.append(
                _accepted(f"{order_id} was answered 202 but Temporal has no saga", order_id)
            )
        elif effects := evidence.effects.get(order_id):
            answers = ", ".join(str(s.exchange.status) for s in sent)
            found.append(
                _accepted(
                    f"{order_id} never started (answers: {answers}) yet left "
                    + "; ".join(effects[:5]),
                    order_id,
                )
            )
    for order_id in sorted(evidence.sagas.keys() - asked.keys()):
        found.append(
            _accepted(f"{order_id} has a saga no request in the client log asked for", order_id)
        )
    for entry in evidence.ledger:
        if entry.order_id is None:
            found.append(
                Violation(
                    "accepted",
                    f"ledger {entry.kind} #{entry.seq} names no order: {entry.reference!r}",
                    where=(entry.reference,),
                )
            )
    for order_id in sorted(evidence.effects.keys() - asked.keys() - evidence.sagas.keys()):
        effects = evidence.effects[order_id]
        found.append(
            _accepted(f"{order_id!r}, never asked for, left " + "; ".join(effects[:5]), order_id)
        )
    return found


def _accepted(detail: str, order_id: str) -> Violation:
    return Violation("accepted", detail, (order_id,))


def unfinished(saga: Saga) -> str | None:
    """Why a saga has not ended normally, or None if it has."""
    if saga.ended:
        return None
    if saga.execution == "RUNNING":
        status = saga.state.status if saga.state else "unknown"
        return f"has not ended (its saga is running, {status})"
    if saga.execution == "COMPLETED":
        status = saga.state.status if saga.state else "nothing"
        return f"ended with status {status}"
    return f"ended {saga.execution} without finishing"


def requested(evidence: Evidence, saga: Saga) -> tuple[tuple[str, int], ...] | None:
    """The lines the client asked for under the order's key, in the body its saga got; a
    checkout's come from the cart, so the saga's own lines stand in."""
    if saga.order is None:
        return None
    wanted = Request.of_input(saga.order)
    if wanted.checkout:
        return tuple((line.sku, line.quantity) for line in saga.order.lines)
    for sent in evidence.submissions.get(saga.order_id, []):
        if sent.request == wanted:
            return sent.request.lines
    return None


def captured_once(evidence: Evidence) -> list[Violation]:
    found = []
    for order_id, saga in sorted(evidence.sagas.items()):
        if saga.status != SagaStatus.COMPLETED or saga.state is None:
            continue
        lines = requested(evidence, saga)
        if lines is None:
            found.append(
                _captured(f"{order_id} completed, but no request sent its order", order_id)
            )
            continue
        captures = evidence.captures(order_id)
        total = _total(evidence, lines)
        if len(captures) != 1:
            amounts = ", ".join(f"{c.amount} (#{c.seq})" for c in captures) or "none"
            found.append(
                _captured(
                    f"{order_id} completed with {len(captures)} captures: {amounts}", order_id
                )
            )
        elif total is None:
            unknown = sorted({sku for sku, _ in lines} - evidence.prices.keys())
            found.append(
                _captured(f"{order_id} completed with SKUs not in the catalog: {unknown}", order_id)
            )
        elif captures[0].amount != total:
            found.append(
                _captured(
                    f"{order_id} was captured {captures[0].amount}, its catalog total is {total}",
                    order_id,
                )
            )
        found += _allocations(evidence, saga, lines)
    return found


def _captured(detail: str, order_id: str) -> Violation:
    return Violation("captured-once", detail, (order_id,))


def _total(evidence: Evidence, lines: tuple[tuple[str, int], ...]) -> Decimal | None:
    if any(sku not in evidence.prices for sku, _ in lines):
        return None
    return sum((evidence.prices[sku] * quantity for sku, quantity in lines), Decimal("0"))


def _allocations(
    evidence: Evidence, saga: Saga, lines: tuple[tuple[str, int], ...]
) -> list[Violation]:
    """The saga's allocations cover the request exactly, and every region committed its share
    (reservation lines and StockCommitted events) and nothing else."""
    assert saga.state is not None
    order_id = saga.order_id
    wanted: Counter[str] = Counter()
    for sku, quantity in lines:
        wanted[sku] += quantity
    allocated: dict[str, Counter[str]] = {}
    for allocation in saga.state.allocations:
        allocated.setdefault(allocation.region, Counter())[allocation.sku] += allocation.quantity
    total: Counter[str] = sum(allocated.values(), Counter())
    found = []
    if total != wanted:
        found.append(
            _captured(
                f"{order_id} allocated {dict(total)}, its request asked {dict(wanted)}", order_id
            )
        )
    for what, seen in (
        ("committed reservation lines", evidence.committed(order_id)),
        ("StockCommitted events", evidence.commit_events(order_id)),
    ):
        for region in sorted(seen.keys() | allocated.keys()):
            if seen.get(region, Counter()) != allocated.get(region, Counter()):
                found.append(
                    Violation(
                        "captured-once",
                        f"{order_id} allocated {dict(allocated.get(region, {}))} in {region}, "
                        f"its {what} there say {dict(seen.get(region, {}))}",
                        (order_id,),
                        (region,),
                    )
                )
    return found


def compensated_clean(evidence: Evidence) -> list[Violation]:
    found = []
    for order_id, saga in sorted(evidence.sagas.items()):
        if saga.status != SagaStatus.COMPENSATED or saga.state is None:
            continue
        rule = "compensated-clean"
        if captures := evidence.captures(order_id):
            amounts = ", ".join(f"{c.amount} (#{c.seq})" for c in captures)
            found.append(
                Violation(rule, f"compensated {order_id} was captured: {amounts}", (order_id,))
            )
        if holds := evidence.open_holds(order_id):
            how = (
                "was resolved as released by hand, but the ledger shows"
                if saga.state.resolutions
                else "left"
            )
            found.append(
                Violation(rule, f"compensated {order_id} {how} open holds {holds}", (order_id,))
            )
        for region, units in sorted(evidence.committed(order_id).items()):
            found.append(
                Violation(
                    rule,
                    f"compensated {order_id} committed {dict(units)} in {region}",
                    (order_id,),
                    (region,),
                )
            )
    return found
