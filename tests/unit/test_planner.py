"""plan_allocation: exact coverage, availability limits, home first, shortfalls, determinism."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regions.values import Allocation, StockLine
from workflows.planner import InsufficientStock, Shortfall, plan_allocation, regions_in

REGIONS = ("r0", "r1", "r2", "r3")
SKUS = ("A", "B", "C")


def line(sku: str, quantity: int) -> StockLine:
    return StockLine(sku=sku, quantity=quantity)


def pick(region: str, sku: str, quantity: int) -> Allocation:
    return Allocation(region=region, sku=sku, quantity=quantity)


@dataclass(frozen=True)
class Case:
    demands: list[StockLine]
    home: str
    availability: dict[str, dict[str, int]]
    preference: list[str]

    def plan(self) -> list[Allocation]:
        return plan_allocation(self.demands, self.home, self.availability, self.preference)

    def available(self, sku: str) -> int:
        return sum(levels.get(sku, 0) for levels in self.availability.values())

    def requested(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for demand in self.demands:
            totals[demand.sku] += demand.quantity
        return totals


demand = st.builds(line, st.sampled_from(SKUS), st.integers(min_value=1, max_value=20))
levels = st.dictionaries(st.sampled_from(SKUS), st.integers(min_value=0, max_value=12))
# Some regions are left out of `availability`, but every region is in `preference`.
availability = st.dictionaries(st.sampled_from(REGIONS), levels)


@st.composite
def cases(draw: st.DrawFn, unique_skus: bool = False) -> Case:
    lines = st.lists(
        demand, min_size=1, max_size=4, unique_by=(lambda d: d.sku) if unique_skus else None
    )
    return Case(
        demands=draw(lines),
        home=draw(st.sampled_from(REGIONS)),
        availability=draw(availability),
        preference=list(draw(st.permutations(REGIONS))),
    )


def given_by_region(picks: list[Allocation]) -> Counter[tuple[str, str]]:
    totals: Counter[tuple[str, str]] = Counter()
    for pick in picks:
        totals[(pick.region, pick.sku)] += pick.quantity
    return totals


def enough_stock(case: Case) -> bool:
    return all(case.available(sku) >= n for sku, n in case.requested().items())


# Properties


@given(cases())
def test_every_demand_is_covered_exactly_when_stock_suffices(case: Case) -> None:
    if not enough_stock(case):
        return
    picked: Counter[str] = Counter()
    for pick in case.plan():
        picked[pick.sku] += pick.quantity
    assert picked == case.requested()


@given(cases())
def test_no_region_gives_more_than_it_has(case: Case) -> None:
    if not enough_stock(case):
        return
    for (region, sku), quantity in given_by_region(case.plan()).items():
        assert 0 < quantity <= case.availability[region].get(sku, 0)


@given(cases(unique_skus=True))
def test_home_gives_as_much_as_it_can_of_each_line(case: Case) -> None:
    if not enough_stock(case):
        return
    given_ = given_by_region(case.plan())
    home_levels = case.availability.get(case.home, {})
    for line in case.demands:
        expected = min(line.quantity, home_levels.get(line.sku, 0))
        assert given_[(case.home, line.sku)] == expected


@given(cases())
def test_regions_missing_from_availability_give_nothing(case: Case) -> None:
    if not enough_stock(case):
        return
    assert set(regions_in(case.plan())) <= set(case.availability)


@given(cases(unique_skus=True))
def test_insufficient_stock_raised_iff_some_sku_lacks_stock_everywhere(case: Case) -> None:
    expected = [
        Shortfall(line.sku, line.quantity, case.available(line.sku))
        for line in case.demands
        if case.available(line.sku) < line.quantity
    ]
    if not expected:
        case.plan()
        return
    with pytest.raises(InsufficientStock) as raised:
        case.plan()
    assert list(raised.value.shortfalls) == expected


@given(cases())
def test_shortfalls_name_exactly_the_skus_short_in_total(case: Case) -> None:
    short = {sku for sku, n in case.requested().items() if case.available(sku) < n}
    try:
        case.plan()
    except InsufficientStock as error:
        missing: Counter[str] = Counter()
        for shortfall in error.shortfalls:
            missing[shortfall.sku] += shortfall.requested - shortfall.obtainable
        assert set(missing) == short
        for sku in short:
            assert missing[sku] == case.requested()[sku] - case.available(sku)
    else:
        assert not short


def outcome(case: Case) -> list[Allocation] | tuple[Shortfall, ...]:
    try:
        return case.plan()
    except InsufficientStock as error:
        return error.shortfalls


@given(cases())
def test_plan_is_deterministic(case: Case) -> None:
    reordered = Case(
        demands=list(case.demands),
        home=case.home,
        availability={
            r: dict(reversed(lv.items())) for r, lv in reversed(case.availability.items())
        },
        preference=list(case.preference),
    )
    first = outcome(case)

    assert outcome(case) == first
    assert outcome(reordered) == first


@given(cases())
def test_plan_does_not_change_the_availability_it_is_given(case: Case) -> None:
    before = {region: dict(levels) for region, levels in case.availability.items()}
    outcome(case)
    assert case.availability == before


@settings(max_examples=1000)
@given(
    st.integers(min_value=1, max_value=6),
    st.sampled_from(REGIONS),
    st.fixed_dictionaries({r: st.integers(min_value=0, max_value=6) for r in REGIONS}),
)
def test_single_line_uses_one_other_region_when_one_can_cover_what_home_lacks(
    quantity: int, home: str, units: dict[str, int]
) -> None:
    remainder = quantity - min(quantity, units[home])
    if not any(units[r] >= remainder for r in REGIONS if r != home):
        return
    stock = {region: {"A": n} for region, n in units.items()}
    picks = plan_allocation([line("A", quantity)], home, stock, REGIONS)
    assert len([r for r in regions_in(picks) if r != home]) <= 1


# Examples


def test_home_that_covers_everything_is_the_only_region() -> None:
    stock = {"eu": {"A": 5, "B": 5}, "us": {"A": 100, "B": 100}}

    picks = plan_allocation([line("A", 3), line("B", 5)], "eu", stock, ["us", "eu"])

    assert picks == [pick("eu", "A", 3), pick("eu", "B", 5)]


def test_split_prefers_a_region_the_plan_already_uses() -> None:
    stock = {"home": {}, "x": {"B": 5}, "y": {"A": 5, "B": 5}}

    picks = plan_allocation([line("A", 2), line("B", 2)], "home", stock, ["x", "y"])

    assert picks == [pick("y", "A", 2), pick("y", "B", 2)]


def test_split_prefers_a_region_covering_the_whole_line_over_preference() -> None:
    stock = {"home": {}, "a": {"A": 3}, "b": {"A": 5}}

    picks = plan_allocation([line("A", 5)], "home", stock, ["a", "b"])

    assert picks == [pick("b", "A", 5)]


def test_split_prefers_a_region_covering_what_home_left_over_preference() -> None:
    stock = {"home": {"A": 5}, "a": {"A": 3}, "b": {"A": 5}}

    picks = plan_allocation([line("A", 10)], "home", stock, ["a", "b"])

    assert picks == [pick("home", "A", 5), pick("b", "A", 5)]


def test_split_follows_preference_when_no_region_covers_the_remainder() -> None:
    stock = {"home": {"A": 1}, "a": {"A": 3}, "b": {"A": 3}}

    picks = plan_allocation([line("A", 6)], "home", stock, ["b", "a"])

    assert picks == [pick("home", "A", 1), pick("b", "A", 3), pick("a", "A", 2)]


def test_insufficient_stock_names_lines_and_obtainable_counts() -> None:
    stock = {"home": {"A": 1, "B": 9}, "x": {"A": 2}}

    with pytest.raises(InsufficientStock, match=r"A \(3 of 4\)") as raised:
        plan_allocation([line("A", 4), line("B", 9)], "home", stock, ["x"])

    assert raised.value.shortfalls == (Shortfall("A", 4, 3),)


def test_regions_in_lists_each_region_once_in_first_use_order() -> None:
    picks = [pick("b", "A", 1), pick("a", "A", 1), pick("b", "B", 2), pick("c", "C", 1)]

    assert regions_in(picks) == ["b", "a", "c"]
    assert regions_in([]) == []
