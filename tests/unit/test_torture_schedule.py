"""The torture schedule is drawn from the seed alone: the same seed gives the same schedule,
every kind of fault turns up across seeds, and each fault keeps to its bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from geosaga.torture.schedule import (
    ACTIVITY_TIMEOUT_SECONDS,
    BEYOND_BOUND_MIN_MINUTES,
    DURATIONS,
    GATEWAY_TIMEOUT_SECONDS,
    SQLITE_BUSY_SECONDS,
    Kind,
    Store,
    draw,
    kinds_for,
)
from regions.hlc import DEFAULT_MAX_DRIFT_MS

seeds = st.integers(min_value=0, max_value=2**63)
minutes = st.floats(min_value=0.1, max_value=10, allow_nan=False)
stores = st.sampled_from(["sqlite", "postgres"])


@given(seeds, minutes, stores)
def test_the_same_seed_gives_the_same_schedule(seed: int, length: float, store: Store) -> None:
    assert draw(seed, length, store) == draw(seed, length, store)


def test_different_seeds_give_different_schedules() -> None:
    schedules = {repr(draw(seed, 2, "postgres")) for seed in range(50)}
    assert len(schedules) == 50


def test_every_kind_appears_over_seeds() -> None:
    for store in ("sqlite", "postgres"):
        seen = {fault.kind for seed in range(30) for fault in draw(seed, 3, store)}
        assert seen == set(kinds_for(store, 3)), store
    assert Kind.PG_TERMINATE in kinds_for("postgres", 1)
    assert Kind.PG_TERMINATE not in kinds_for("sqlite", 10)


@settings(max_examples=200)
@given(seeds, minutes, stores)
def test_every_fault_keeps_to_its_bounds(seed: int, length: float, store: Store) -> None:
    for fault in draw(seed, length, store):
        low, high = DURATIONS[fault.kind]
        assert low <= fault.duration <= high
        assert fault.at > 0
        assert fault.ends <= length * 60 + 0.01
        if fault.kind == Kind.WORKER_PAUSE:
            assert fault.duration > ACTIVITY_TIMEOUT_SECONDS
        if fault.kind == Kind.STORE_CUT and store == "sqlite":
            assert fault.params["how"] == "write-lock"
            assert fault.duration < SQLITE_BUSY_SECONDS
        if fault.kind == Kind.CLOCK_SKEW:
            assert 0 < abs(fault.params["offset_ms"]) < DEFAULT_MAX_DRIFT_MS
        if fault.kind == Kind.CLOCK_SKEW_BEYOND:
            assert abs(fault.params["offset_ms"]) > DEFAULT_MAX_DRIFT_MS
            assert length >= BEYOND_BOUND_MIN_MINUTES
        if fault.kind == Kind.GATEWAY_FAULTS:
            assert fault.params["hang_seconds"] > GATEWAY_TIMEOUT_SECONDS
        if fault.kind == Kind.PG_TERMINATE:
            assert store == "postgres"


@given(seeds, minutes, stores)
def test_faults_on_one_target_never_overlap(seed: int, length: float, store: Store) -> None:
    faults = draw(seed, length, store)
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    families = (
        {Kind.WORKER_KILL, Kind.WORKER_PAUSE, Kind.TEMPORAL_CUT},
        {Kind.STORE_CUT, Kind.PG_TERMINATE},
        {Kind.CLOCK_SKEW, Kind.CLOCK_SKEW_BEYOND},
    )
    for i, first in enumerate(faults):
        for second in faults[i + 1 :]:
            related = first.kind == second.kind or any(
                {first.kind, second.kind} <= family for family in families
            )
            if related and first.target == second.target:
                assert first.ends <= second.at + 0.01, (first, second)


@given(seeds, stores)
def test_longer_runs_hold_more_faults(seed: int, store: Store) -> None:
    assert len(draw(seed, 4, store)) > len(draw(seed, 0.5, store))
