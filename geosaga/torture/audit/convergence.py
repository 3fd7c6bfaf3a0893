"""The rule `convergence`: after quiescence every region's views agree with their owners, carts
agree across regions, nothing is left to replicate, and every dead letter is accounted for."""

from __future__ import annotations

from collections import Counter

from geosaga.torture.audit.evidence import Event, Evidence, Level
from geosaga.torture.audit.faults import skewed_beyond_bound
from geosaga.torture.audit.record import Violation


def convergence(evidence: Evidence) -> list[Violation]:
    return [
        *_stock_views(evidence),
        *_order_views(evidence),
        *_carts(evidence),
        *_lag(evidence),
        *_dead_letters(evidence),
    ]


def _broke(detail: str, orders: tuple[str, ...] = (), where: tuple[str, ...] = ()) -> Violation:
    return Violation("convergence", detail, orders, where)


def _stock_views(evidence: Evidence) -> list[Violation]:
    """Every region's view of every region's stock (its own included) is that stock; one
    violation per viewing region, naming each SKU it has wrong."""
    found = []
    for viewer in evidence.regions.values():
        wrong = {
            f"{owner.name}/{sku}": f"{_level(viewer.stock_views.get((owner.name, sku)))} "
            f"for {_level(level)}"
            for owner in evidence.regions.values()
            for sku, level in sorted(owner.stock.items())
            if viewer.stock_views.get((owner.name, sku)) != level
        }
        if wrong:
            found.append(
                _broke(
                    f"{viewer.name}'s stock views (on hand/reserved) disagree with their owners' "
                    f"stock on {len(wrong)} SKUs: {_listed(wrong)}",
                    where=(viewer.name, *wrong),
                )
            )
    return found


def _level(level: Level | None) -> str:
    return "none" if level is None else f"{level.on_hand}/{level.reserved}"


def _order_views(evidence: Evidence) -> list[Violation]:
    """Each ended order's outcome as its home region recorded it (OrderEnded) is the saga's,
    and every region's view of the order says the same: one violation per viewing region,
    naming each order it has wrong."""
    found = []
    recorded: dict[str, tuple[str, str | None]] = {}
    for order_id, saga in sorted(evidence.sagas.items()):
        if saga.status is None or saga.state is None:
            continue
        ended = evidence.outcomes_recorded(saga.state.home_region, order_id)
        if not ended:
            found.append(
                _broke(f"{order_id} ended; its home region never recorded it", (order_id,))
            )
            continue
        recorded[order_id] = _outcome(ended[-1])
        outcome = (str(saga.state.status), _reason(saga.state.reason))
        if recorded[order_id] != outcome:
            found.append(
                _broke(
                    f"{order_id}: its home region recorded {_said(recorded[order_id])}, its "
                    f"saga ended {_said(outcome)}",
                    (order_id,),
                )
            )
    for region in evidence.regions.values():
        wrong = {
            order_id: f"{_said(region.order_views.get(order_id))} for {_said(outcome)}"
            for order_id, outcome in recorded.items()
            if region.order_views.get(order_id) != outcome
        }
        if wrong:
            found.append(
                _broke(
                    f"{region.name}'s views of {len(wrong)} ended orders disagree with what "
                    f"their home regions recorded: {_listed(wrong)}",
                    tuple(wrong),
                    (region.name,),
                )
            )
    return found


def _said(outcome: tuple[str, str | None] | None) -> str:
    if outcome is None:
        return "none"
    status, reason = outcome
    return f"{status} ({reason})" if reason else status


def _listed(wrong: dict[str, str], at_most: int = 20) -> str:
    shown = [f"{what} {how}" for what, how in list(wrong.items())[:at_most]]
    more = len(wrong) - at_most
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _outcome(event: Event) -> tuple[str, str | None]:
    return str(event.payload.get("status")), _reason(event.payload.get("reason"))


def _reason(reason: object) -> str | None:
    return None if reason is None else str(reason)


def _carts(evidence: Evidence) -> list[Violation]:
    found = []
    customers = sorted({c for region in evidence.regions.values() for c in region.carts})
    for customer in customers:
        merged = {
            name: dict(region.carts.get(customer, {})) for name, region in evidence.regions.items()
        }
        if len({tuple(sorted(items.items())) for items in merged.values()}) > 1:
            found.append(
                _broke(f"{customer}'s cart differs: {merged}", where=(f"cart:{customer}",))
            )
    return found


def _lag(evidence: Evidence) -> list[Violation]:
    found = []
    for region in evidence.regions.values():
        for source, behind in sorted(region.lag.items()):
            if behind:
                found.append(
                    _broke(
                        f"{region.name} is {behind} events behind {source}",
                        where=(f"{source}->{region.name}",),
                    )
                )
        if region.inbox:
            found.append(
                _broke(
                    f"{region.name} holds {region.inbox} events in its inbox", where=(region.name,)
                )
            )
    return found


def _dead_letters(evidence: Evidence) -> list[Violation]:
    """A dead letter is accounted for when a clock skew beyond the bound (of its source or of
    the region that received it) explains it and the operator re-drove it since. The
    replication counters say how many there were, so none can go missing unseen."""
    skewed = skewed_beyond_bound(evidence.faults)
    found = []
    for region in evidence.regions.values():
        known: Counter[str] = Counter()
        for letter in region.letters:
            known[letter.source_region] += 1
            found.append(
                _broke(
                    f"{region.name} still holds dead letter {letter.event_id} "
                    f"({letter.event_type} from {letter.source_region}): {letter.error[:200]}",
                    _order_of(letter.aggregate_type, letter.aggregate_id),
                    (region.name,),
                )
            )
        for event_id, source in sorted(region.redriven.items()):
            known[source] += 1
            if source not in skewed and region.name not in skewed:
                event = _find(evidence, source, event_id)
                orders = _order_of(event.aggregate_type, event.aggregate_id) if event else ()
                what = event.event_type if event else "an event"
                found.append(
                    _broke(
                        f"{region.name} dead-lettered {what} {event_id} from {source} (re-driven "
                        "since), and no clock skew beyond the bound explains it",
                        orders,
                        (region.name,),
                    )
                )
        for source, count in sorted(region.dead_lettered.items()):
            if count > known[source]:
                found.append(
                    _broke(
                        f"{region.name} dead-lettered {count} of {source}'s events; "
                        f"{known[source]} are left or were re-driven by the operator",
                        where=(f"{source}->{region.name}",),
                    )
                )
    return found


def _order_of(aggregate_type: str, aggregate_id: str) -> tuple[str, ...]:
    return (aggregate_id,) if aggregate_type == "order" else ()


def _find(evidence: Evidence, source: str, event_id: str) -> Event | None:
    region = evidence.regions.get(source)
    return next((e for e in region.outbox if e.event_id == event_id), None) if region else None
