"""The rules about stock: conserved per region and SKU (`conservation`), and nothing held
once the orders have ended (`no-reservation-after-end`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from geosaga.torture.audit.evidence import Event, Evidence, Level, Region
from geosaga.torture.audit.record import Violation
from geosaga.torture.audit.requests import stock_sets
from regions.values import ReservationStatus


@dataclass(frozen=True)
class Move:
    """A change to one SKU's stock, as the region's outbox tells it: `set` puts on hand at
    `units`; the others move `units`."""

    kind: Literal["set", "reserve", "release", "commit"]
    sku: str
    units: int
    order_id: str | None = None


@dataclass
class Replay:
    """Stock as the outbox alone says it is, and every set on the way."""

    on_hand: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    sets: list[tuple[str, int]] = field(default_factory=list)
    # The sets again, each run of one level set again with no commit between counted once: a
    # store retries a set whose commit it could not confirm, and the repeat changes nothing.
    distinct_sets: list[tuple[str, int]] = field(default_factory=list)
    # (SKU, what happened) each time on hand or reserved went below zero
    below_zero: list[tuple[str, str]] = field(default_factory=list)


def moves(outbox: Iterable[Event]) -> list[Move]:
    """The stock moves of a region's outbox, in its order. A set is an operator's (its cause
    is `adjusted from N`); the levels other StockLevelChanged events report are the table's
    word, which the replay is there to check."""
    found: list[Move] = []
    kinds: dict[str, Literal["reserve", "release", "commit"]] = {
        "StockReserved": "reserve",
        "StockReleased": "release",
        "StockCommitted": "commit",
    }
    for event in outbox:
        payload = event.payload
        if event.event_type == "StockLevelChanged":
            if str(payload.get("cause", "")).startswith("adjusted"):
                found.append(Move("set", str(payload["sku"]), int(payload["on_hand"])))
        elif event.event_type in kinds:
            kind = kinds[event.event_type]
            found += [
                Move(kind, str(line["sku"]), int(line["quantity"]), event.aggregate_id)
                for line in payload.get("lines", [])
            ]
    return found


def replay(stream: Iterable[Move]) -> Replay:
    """On hand is the last level set minus the units committed after it; reserved rises with
    each reservation and falls with each release and commit. Neither may go below zero."""
    state = Replay()
    standing: dict[str, int] = {}  # SKU → the level set last, while no commit followed it
    for move in stream:
        on_hand = state.on_hand.get(move.sku, 0)
        reserved = state.reserved.get(move.sku, 0)
        if move.kind == "set":
            on_hand = move.units
            state.sets.append((move.sku, move.units))
            if standing.get(move.sku) != move.units:
                state.distinct_sets.append((move.sku, move.units))
            standing[move.sku] = move.units
        elif move.kind == "reserve":
            reserved += move.units
        elif move.kind == "release":
            reserved -= move.units
        else:
            on_hand -= move.units
            reserved -= move.units
            standing.pop(move.sku, None)
        # Only releases and commits take stock away: each one that leaves less than nothing.
        if move.kind in ("release", "commit") and (on_hand < 0 or reserved < 0):
            state.below_zero.append(
                (
                    move.sku,
                    f"{move.kind} {move.units} for {move.order_id} left on hand {on_hand}, "
                    f"reserved {reserved}",
                )
            )
        state.on_hand[move.sku], state.reserved[move.sku] = on_hand, reserved
    return state


def conservation(evidence: Evidence) -> list[Violation]:
    asked: Counter[tuple[str, str, int]] = Counter()
    acknowledged: Counter[tuple[str, str, int]] = Counter()
    for put in stock_sets(evidence.exchanges):
        # A lost answer may still have set it; a refused one may not have.
        if put.exchange.status in (200, None):
            asked[(put.region, put.sku, put.on_hand)] += 1
        if put.exchange.status == 200:
            acknowledged[(put.region, put.sku, put.on_hand)] += 1
    for seeded, levels in evidence.seed_stock.items():
        asked.update((seeded, sku, on_hand) for sku, on_hand in levels.items())
    # The fewest and the most requests the outbox's sets may stand for.
    done: Counter[tuple[str, str, int]] = Counter()
    done_most: Counter[tuple[str, str, int]] = Counter()
    found = []
    for region in evidence.regions.values():
        replayed = replay(moves(region.outbox))
        done.update((region.name, sku, level) for sku, level in replayed.distinct_sets)
        done_most.update((region.name, sku, level) for sku, level in replayed.sets)
        found += [
            _broke(region.name, sku, f"{region.name} {sku}: {note}")
            for sku, note in replayed.below_zero
        ]
        found += _levels(region, replayed)
    for (region_name, sku, level), times in sorted(done.items()):
        if times > asked[(region_name, sku, level)]:
            found.append(
                _broke(
                    region_name,
                    sku,
                    f"{region_name} {sku} was set to {level} {times} times; the client asked "
                    f"{asked[(region_name, sku, level)]} (answered 200 or lost) or the seed",
                )
            )
    for (region_name, sku, level), times in sorted(acknowledged.items()):
        if done_most[(region_name, sku, level)] < times:
            found.append(
                _broke(
                    region_name,
                    sku,
                    f"{region_name} {sku}: setting {level} was answered 200 {times} times, the "
                    f"outbox shows {done_most[(region_name, sku, level)]}",
                )
            )
    return found


def _levels(region: Region, replayed: Replay) -> list[Violation]:
    held: Counter[str] = Counter()
    for reservation in region.reservations:
        if reservation.status == ReservationStatus.HELD:
            held.update(reservation.lines)
    found = []
    skus = region.stock.keys() | replayed.on_hand.keys() | replayed.reserved.keys()
    for sku in sorted(skus):
        row = region.stock.get(sku, Level(0, 0))
        expected = replayed.on_hand.get(sku, 0)
        name = f"{region.name} {sku}"
        if row.on_hand != expected:
            found.append(
                _broke(
                    region.name,
                    sku,
                    f"{name}: on hand {row.on_hand}, the last level set minus the commits "
                    f"after it gives {expected}",
                )
            )
        if row.on_hand < 0:
            found.append(_broke(region.name, sku, f"{name}: on hand {row.on_hand}"))
        if row.reserved != held[sku]:
            found.append(
                _broke(
                    region.name,
                    sku,
                    f"{name}: reserved {row.reserved}, held reservations hold {held[sku]}",
                )
            )
        if row.reserved != replayed.reserved.get(sku, 0):
            found.append(
                _broke(
                    region.name,
                    sku,
                    f"{name}: reserved {row.reserved}, the outbox's reservations, releases and "
                    f"commits give {replayed.reserved.get(sku, 0)}",
                )
            )
    return found


def _broke(region: str, sku: str, detail: str) -> Violation:
    return Violation("conservation", detail, (), (f"{region}/{sku}",))


def no_reservation_after_end(evidence: Evidence) -> list[Violation]:
    found = []
    rule = "no-reservation-after-end"
    for region in evidence.regions.values():
        holders: dict[str, set[str]] = {}
        for reservation in region.reservations:
            if reservation.status != "held":
                continue
            for sku in reservation.lines:
                holders.setdefault(sku, set()).add(reservation.order_id)
            saga = evidence.sagas.get(reservation.order_id)
            how = f"the {saga.status} order" if saga and saga.status else "the unfinished order"
            found.append(
                Violation(
                    rule,
                    f"{how} {reservation.order_id} still holds {dict(reservation.lines)} in "
                    f"{region.name}",
                    (reservation.order_id,),
                    (region.name,),
                )
            )
        for sku, level in sorted(region.stock.items()):
            if level.reserved != 0:
                found.append(
                    Violation(
                        rule,
                        f"{region.name} {sku}: {level.reserved} reserved after quiescence",
                        tuple(sorted(holders.get(sku, ()))),
                        (f"{region.name}/{sku}",),
                    )
                )
    return found
