"""Everything the checker read, as plain data: the rules are pure functions of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any, NamedTuple

from geosaga.torture.audit.faults import Fault
from geosaga.torture.audit.requests import Exchange, Submission, redrives, submissions
from regions.values import ReservationStatus, SagaStatus
from workflows.contract import WORKFLOW_ID_PREFIX, OrderInput, SagaState

ENDED = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    kind: str
    authorisation_id: str | None
    reference: str
    amount: Decimal | None
    idempotency_key: str | None

    @property
    def order_id(self) -> str | None:
        """The order whose payment step made it: references are `order-<id>/authorise/<r>`."""
        if not self.reference.startswith(WORKFLOW_ID_PREFIX):
            return None
        return self.reference.removeprefix(WORKFLOW_ID_PREFIX).split("/", 1)[0] or None


@dataclass(frozen=True)
class Saga:
    """An order's saga as Temporal tells it: the latest run's execution status (`COMPLETED`,
    `RUNNING`, `TERMINATED`, ...), its state, its input, and how many runs the id had."""

    order_id: str
    execution: str
    state: SagaState | None
    order: OrderInput | None
    runs: int = 1

    @property
    def ended(self) -> bool:
        return (
            self.execution == "COMPLETED" and self.state is not None and self.state.status in ENDED
        )

    @property
    def status(self) -> SagaStatus | None:
        return self.state.status if self.ended and self.state else None


class Level(NamedTuple):
    on_hand: int
    reserved: int


@dataclass(frozen=True)
class Reservation:
    key: str
    order_id: str
    status: str
    lines: Mapping[str, int]


@dataclass(frozen=True)
class Event:
    """An outbox event; `id` orders the region's stream."""

    id: int
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Letter:
    event_id: str
    source_region: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    error: str


@dataclass(frozen=True)
class Region:
    """One region's store after the run."""

    name: str
    stock: Mapping[str, Level] = field(default_factory=dict)
    reservations: list[Reservation] = field(default_factory=list)
    outbox: list[Event] = field(default_factory=list)
    # order → (status, reason) as this region's view has it
    order_views: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    # (owner region, SKU) → levels as this region's view has them
    stock_views: Mapping[tuple[str, str], Level] = field(default_factory=dict)
    # customer → the cart as this region merges it
    carts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    letters: list[Letter] = field(default_factory=list)
    # source region → events of it dead-lettered here (the replication counters)
    dead_lettered: Mapping[str, int] = field(default_factory=dict)
    # source region → events not yet applied here
    lag: Mapping[str, int] = field(default_factory=dict)
    inbox: int = 0
    # event id → source region, of the events the operator re-drove that were applied here
    redriven: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    exchanges: list[Exchange]
    faults: list[Fault]
    ledger: list[LedgerEntry]
    sagas: Mapping[str, Saga]
    regions: Mapping[str, Region]
    prices: Mapping[str, Decimal]
    default_region: str
    seed_stock: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    temporal_grace_seconds: float = 5.0

    @cached_property
    def submissions(self) -> dict[str, list[Submission]]:
        return submissions(self.exchanges, self.default_region)

    @cached_property
    def redrives(self) -> dict[str, dict[str, Exchange]]:
        return redrives(self.exchanges)

    @cached_property
    def ledger_by_order(self) -> dict[str, list[LedgerEntry]]:
        found: dict[str, list[LedgerEntry]] = {}
        for entry in self.ledger:
            found.setdefault(entry.order_id or "", []).append(entry)
        return found

    def captures(self, order_id: str) -> list[LedgerEntry]:
        return [e for e in self.ledger_by_order.get(order_id, []) if e.kind == "captured"]

    def open_holds(self, order_id: str) -> list[str]:
        """Authorisations of the order whose last ledger entry leaves them `authorised`."""
        last: dict[str, str] = {}
        for entry in sorted(self.ledger_by_order.get(order_id, []), key=lambda e: e.seq):
            if entry.authorisation_id is not None:
                last[entry.authorisation_id] = entry.kind
        return sorted(auth for auth, kind in last.items() if kind == "authorised")

    def committed(self, order_id: str) -> dict[str, Counter[str]]:
        """Region → SKU → units of the order's committed reservation lines there."""
        return self._committed.get(order_id, {})

    def commit_events(self, order_id: str) -> dict[str, Counter[str]]:
        """Region → SKU → units its StockCommitted events for the order say."""
        return self._commit_events.get(order_id, {})

    def outcomes_recorded(self, region: str, order_id: str) -> list[Event]:
        """The region's OrderEnded events for the order, in its outbox order."""
        return self._ended.get((region, order_id), [])

    @cached_property
    def _committed(self) -> dict[str, dict[str, Counter[str]]]:
        found: dict[str, dict[str, Counter[str]]] = {}
        for region in self.regions.values():
            for reservation in region.reservations:
                if reservation.status == ReservationStatus.COMMITTED:
                    units = found.setdefault(reservation.order_id, {})
                    units.setdefault(region.name, Counter()).update(reservation.lines)
        return found

    @cached_property
    def _commit_events(self) -> dict[str, dict[str, Counter[str]]]:
        found: dict[str, dict[str, Counter[str]]] = {}
        for region in self.regions.values():
            for event in region.outbox:
                if event.event_type != "StockCommitted":
                    continue
                units = found.setdefault(event.aggregate_id, {}).setdefault(region.name, Counter())
                for line in event.payload.get("lines", []):
                    units[str(line["sku"])] += int(line["quantity"])
        return found

    @cached_property
    def _ended(self) -> dict[tuple[str, str], list[Event]]:
        found: dict[tuple[str, str], list[Event]] = {}
        for region in self.regions.values():
            for event in region.outbox:
                if event.event_type == "OrderEnded":
                    found.setdefault((region.name, event.aggregate_id), []).append(event)
        return found

    @cached_property
    def effects(self) -> dict[str, list[str]]:
        """Order → every trace it left outside Temporal: ledger entries, reservations, order
        events and order views, in any region."""
        found: dict[str, list[str]] = {}
        for entry in self.ledger:
            if entry.order_id:
                found.setdefault(entry.order_id, []).append(f"ledger {entry.kind} #{entry.seq}")
        for region in self.regions.values():
            for reservation in region.reservations:
                found.setdefault(reservation.order_id, []).append(
                    f"a {reservation.status} reservation in {region.name}"
                )
            for event in region.outbox:
                if event.aggregate_type == "order":
                    found.setdefault(event.aggregate_id, []).append(
                        f"{event.event_type} in {region.name}"
                    )
            for order_id in region.order_views:
                found.setdefault(order_id, []).append(f"an order view in {region.name}")
        return found
