"""Allocation planning: which region gives how many units of each line. Pure and deterministic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from regions.values import Allocation, StockLine


@dataclass(frozen=True)
class Shortfall:
    sku: str
    requested: int
    obtainable: int


class InsufficientStock(Exception):
    def __init__(self, shortfalls: Sequence[Shortfall]) -> None:
        self.shortfalls = tuple(shortfalls)
        super().__init__(
            "not enough stock in any combination of regions: "
            + ", ".join(f"{s.sku} ({s.obtainable} of {s.requested})" for s in self.shortfalls)
        )


def plan_allocation(
    demands: Sequence[StockLine],
    home: str,
    availability: Mapping[str, Mapping[str, int]],
    preference: Sequence[str],
) -> list[Allocation]:
    """Takes each line from the home region first, then splits the rest across other regions.

    Other regions are tried in this order: those the plan already uses (fewer regions per order),
    then those that can cover the whole remainder, then by `preference`. A region never gives
    more than `availability` says it has; regions missing from `availability` give nothing.
    Raises InsufficientStock naming every line that cannot be covered.
    """
    left = {region: dict(levels) for region, levels in availability.items()}
    others = [region for region in preference if region != home]
    picks: list[Allocation] = []
    used: list[str] = []
    shortfalls: list[Shortfall] = []
    for demand in demands:
        remaining = demand.quantity
        tried: set[str] = set()
        region: str | None = home
        while region is not None and remaining:
            take = min(remaining, left.get(region, {}).get(demand.sku, 0))
            if take > 0:
                picks.append(Allocation(region=region, sku=demand.sku, quantity=take))
                left[region][demand.sku] -= take
                remaining -= take
                if region not in used:
                    used.append(region)
            tried.add(region)
            region = _next_region(others, tried, used, left, demand.sku, remaining)
        if remaining:
            shortfalls.append(Shortfall(demand.sku, demand.quantity, demand.quantity - remaining))
    if shortfalls:
        raise InsufficientStock(shortfalls)
    return _merge(picks)


def regions_in(picks: Sequence[Allocation]) -> list[str]:
    seen: list[str] = []
    for pick in picks:
        if pick.region not in seen:
            seen.append(pick.region)
    return seen


def _next_region(
    others: Sequence[str],
    tried: set[str],
    used: Sequence[str],
    left: Mapping[str, Mapping[str, int]],
    sku: str,
    remaining: int,
) -> str | None:
    """The best region still untried that has some of `sku`, ranked for what is left."""
    candidates = [r for r in others if r not in tried and left.get(r, {}).get(sku, 0) > 0]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda r: (r not in used, left[r][sku] < remaining, others.index(r)),
    )


def _merge(picks: Sequence[Allocation]) -> list[Allocation]:
    totals: dict[tuple[str, str], int] = {}
    for pick in picks:
        totals[(pick.region, pick.sku)] = totals.get((pick.region, pick.sku), 0) + pick.quantity
    return [
        Allocation(region=region, sku=sku, quantity=quantity)
        for (region, sku), quantity in totals.items()
    ]
