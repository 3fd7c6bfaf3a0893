"""The invariant checker: what must hold across every region store and Temporal.

`check()` is what `geosaga check` runs and what every chaos test ends with. It reads the sagas
from Temporal (their own final state) and the region stores, and reports each broken promise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from regions.events import StockCommitted, StockLevelChanged
from regions.models import Authorisation, Capture, OutboxEvent, Reservation, ReservationLine, Stock
from regions.money import to_minor
from regions.store import Store
from regions.values import AuthorisationStatus, ReservationStatus, SagaStatus
from workflows.contract import WORKFLOW_ID_PREFIX, WORKFLOW_NAME, SagaState, workflow_id
from workflows.order_saga import OrderSaga

_TERMINAL = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
# Each of these may happen once per order and region, whatever the retries.
_ONCE_PER_ORDER_AND_REGION = (
    "StockReserved",
    "StockCommitted",
    "PaymentAuthorised",
    "PaymentCaptured",
    "PaymentVoided",
)


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str


@dataclass
class Report:
    orders: int = 0
    running: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def broke(self, rule: str, detail: str) -> None:
        self.violations.append(Violation(rule, detail))


async def check(
    client: Client,
    stores: Mapping[str, Store],
    *,
    orders: Iterable[str] | None = None,
    settled: bool = True,
) -> Report:
    """Checks the invariants; `orders` are the ids accepted with 202 (default: every saga in
    Temporal's visibility). With `settled`, a saga that has not ended is a violation too."""
    report = Report()
    order_ids = list(orders) if orders is not None else await _every_order(client)
    sagas = await _sagas(client, order_ids, report)
    report.orders = len(order_ids)
    for order_id, state in sagas.items():
        if state.status not in _TERMINAL:
            report.running.append(order_id)
            if settled:
                report.broke("terminal", f"{order_id} has not ended: {state.status}")
    for region, store in stores.items():
        _check_region(region, store, sagas, report)
    _check_money(stores, sagas, report)
    return report


async def _every_order(client: Client) -> list[str]:
    found = []
    async for execution in client.list_workflows(f'WorkflowType = "{WORKFLOW_NAME}"'):
        found.append(execution.id.removeprefix(WORKFLOW_ID_PREFIX))
    return sorted(set(found))


async def _sagas(client: Client, order_ids: list[str], report: Report) -> dict[str, SagaState]:
    """Every accepted order's saga state; an order Temporal does not know is lost."""
    states = {}
    for order_id in order_ids:
        handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            report.broke("accepted", f"{order_id} was accepted but Temporal has no saga for it")
            continue
        if description.status == WorkflowExecutionStatus.COMPLETED:
            states[order_id] = await handle.result()
        elif description.status == WorkflowExecutionStatus.RUNNING:
            states[order_id] = await handle.query(
                OrderSaga.state, rpc_timeout=timedelta(seconds=10)
            )
        else:
            status = description.status.name if description.status else "unknown"
            report.broke("terminal", f"{order_id}'s saga ended {status} without finishing")
    return states


def _check_region(
    region: str, store: Store, sagas: Mapping[str, SagaState], report: Report
) -> None:
    with store.reading() as session:
        stock = {row.sku: row for row in session.exec(select(Stock))}
        held: Counter[str] = Counter()
        holders: dict[str, set[str]] = {}
        for line, reservation in session.exec(
            select(ReservationLine, Reservation).where(
                ReservationLine.reservation_key == Reservation.key,
                Reservation.status == ReservationStatus.HELD,
            )
        ):
            held[line.sku] += line.quantity
            holders.setdefault(line.sku, set()).add(reservation.order_id)
        events = list(session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id))))
        open_holds = list(
            session.exec(
                select(Authorisation).where(Authorisation.status == AuthorisationStatus.AUTHORISED)
            )
        )
    for sku, row in stock.items():
        if row.reserved != held[sku]:
            report.broke(
                "reserved",
                f"{region} {sku}: reserved {row.reserved}, reservations hold {held[sku]}",
            )
        for order_id in holders.get(sku, ()):
            state = sagas.get(order_id)
            if state is not None and state.status in _TERMINAL:
                report.broke(
                    "reserved",
                    f"{region} {sku}: the {state.status} order {order_id} still holds stock",
                )
    _check_conservation(region, stock, events, report)
    _check_once(region, events, report)
    for hold in open_holds:
        state = sagas.get(hold.order_id)
        if state is None or state.status != SagaStatus.COMPENSATED:
            continue
        if state.resolutions:
            continue  # an operator recorded that they released it by hand
        report.broke(
            "authorisation", f"{region}: compensated order {hold.order_id} left a hold open"
        )


def _check_conservation(
    region: str, stock: Mapping[str, Stock], events: list[OutboxEvent], report: Report
) -> None:
    """On hand = the last level an operator set, minus every commit since (from the outbox)."""
    expected: dict[str, int] = {}
    for event in events:
        if event.event_type == StockLevelChanged.type:
            level = StockLevelChanged.model_validate_json(event.payload)
            if level.cause.startswith("adjusted"):
                expected[level.sku] = level.on_hand
        elif event.event_type == StockCommitted.type:
            for line in StockCommitted.model_validate_json(event.payload).lines:
                expected[line.sku] = expected.get(line.sku, 0) - line.quantity
    for sku, row in stock.items():
        if row.on_hand != expected.get(sku, 0) or row.on_hand < 0:
            report.broke(
                "conservation",
                f"{region} {sku}: on hand {row.on_hand}, stock set minus commits gives "
                f"{expected.get(sku, 0)}",
            )


def _check_once(region: str, events: list[OutboxEvent], report: Report) -> None:
    """No idempotency key with two effects: each effect's event appears once per order."""
    seen: Counter[tuple[str, str]] = Counter(
        (event.event_type, event.aggregate_id)
        for event in events
        if event.event_type in _ONCE_PER_ORDER_AND_REGION
    )
    for (event_type, order_id), count in seen.items():
        if count > 1:
            report.broke("once", f"{region}: {event_type} happened {count} times for {order_id}")


def _check_money(
    stores: Mapping[str, Store], sagas: Mapping[str, SagaState], report: Report
) -> None:
    """Captured (no refunds exist) equals the totals of completed orders, order by order."""
    captured: Counter[str] = Counter()
    for store in stores.values():
        with store.reading() as session:
            for capture in session.exec(select(Capture)):
                captured[capture.order_id] += capture.amount_minor
    for order_id, state in sagas.items():
        expected = to_minor(state.total) if state.status == SagaStatus.COMPLETED else 0
        if state.status in _TERMINAL and captured[order_id] != expected:
            report.broke(
                "money",
                f"{order_id} ({state.status}): captured {captured[order_id]}, expected {expected}",
            )


def summary(report: Report) -> str:
    lines = [f"{report.orders} orders checked, {len(report.violations)} violations"]
    lines += [f"  {v.rule}: {v.detail}" for v in report.violations]
    if report.running:
        lines.append(f"  still running: {', '.join(report.running)}")
    return "\n".join(lines)
