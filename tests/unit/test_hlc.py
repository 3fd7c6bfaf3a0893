"""The hybrid logical clock: monotonic under a skewed, jumping physical clock; bounded drift."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regions.hlc import DEFAULT_MAX_DRIFT_MS, ClockDriftError, HybridLogicalClock, Timestamp

T0 = 1_700_000_000_000
MAX_DRIFT = 5_000


class FakeClock:
    """An injectable physical clock, moved by hand."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


regions = st.sampled_from(("ap", "eu", "us", "eu-west", "x.y"))
# A physical clock that jumps backwards and forwards, and the clocks of remote regions anywhere
# from far behind to exactly max_drift ahead of it.
jumps = st.integers(-3 * MAX_DRIFT, 3 * MAX_DRIFT)
remote_offsets = st.integers(-3 * MAX_DRIFT, MAX_DRIFT)
steps = st.lists(
    st.tuples(jumps, st.none() | st.tuples(remote_offsets, st.integers(0, 3), regions)),
    max_size=50,
)


@given(steps)
def test_timestamps_only_go_forward_whatever_the_physical_clock_does(
    history: list[tuple[int, tuple[int, int, str] | None]],
) -> None:
    physical = FakeClock()
    clock = HybridLogicalClock("eu", physical=physical, max_drift_ms=MAX_DRIFT)
    last = clock.last
    for jump, remote in history:
        physical.ms += jump
        if remote is None:
            stamp = clock.now()
            assert stamp.wall_ms == max(physical.ms, last.wall_ms)
        else:
            offset, logical, region = remote
            received = Timestamp(physical.ms + offset, logical, region)
            stamp = clock.observe(received)
            assert stamp > received
            assert (stamp.wall_ms, stamp.logical) > (received.wall_ms, received.logical)
            assert stamp.wall_ms == max(physical.ms, last.wall_ms, received.wall_ms)
        assert stamp > last
        assert (stamp.wall_ms, stamp.logical) > (last.wall_ms, last.logical)
        assert stamp.region == "eu"
        assert stamp == clock.last
        last = stamp


@given(st.integers(-MAX_DRIFT, MAX_DRIFT), st.integers(0, 10), st.integers(0, 10))
def test_observe_is_after_both_the_remote_and_the_local_timestamp(
    remote_offset: int, remote_logical: int, local_logical: int
) -> None:
    physical = FakeClock()
    local = Timestamp(T0, local_logical, "eu")
    clock = HybridLogicalClock("eu", physical=physical, max_drift_ms=MAX_DRIFT, last=local)
    remote = Timestamp(T0 + remote_offset, remote_logical, "us")
    stamp = clock.observe(remote)
    assert stamp > remote
    assert stamp > local


@given(st.integers(1, 10 * MAX_DRIFT), st.integers(-MAX_DRIFT, MAX_DRIFT))
def test_a_remote_clock_too_far_ahead_is_refused_and_changes_nothing(
    beyond: int, local_skew: int
) -> None:
    physical = FakeClock()
    clock = HybridLogicalClock("eu", physical=physical, max_drift_ms=MAX_DRIFT)
    physical.ms += local_skew
    before = clock.now()
    with pytest.raises(ClockDriftError, match="us's clock"):
        clock.observe(Timestamp(physical.ms + MAX_DRIFT + beyond, 0, "us"))
    assert clock.last == before
    accepted = clock.observe(Timestamp(physical.ms + MAX_DRIFT, 0, "us"))
    assert accepted.wall_ms == physical.ms + MAX_DRIFT


def test_the_default_drift_allowance_is_a_minute() -> None:
    clock = HybridLogicalClock("eu", physical=FakeClock())
    assert DEFAULT_MAX_DRIFT_MS == 60_000
    clock.observe(Timestamp(T0 + 60_000, 0, "us"))
    with pytest.raises(ClockDriftError):
        clock.observe(Timestamp(T0 + 60_001, 0, "us"))


def test_a_clock_resumes_after_its_last_timestamp() -> None:
    last = Timestamp(T0 + 1_000, 7, "eu")
    clock = HybridLogicalClock("eu", physical=FakeClock(T0), last=last)
    assert clock.now() == Timestamp(T0 + 1_000, 8, "eu")


timestamps = st.builds(
    Timestamp,
    st.integers(0, 10**15 - 1),
    st.integers(0, 10**6 - 1),
    st.text(max_size=12),
)
# Few distinct values, so that sorting meets equal walls and logicals often.
crowded = st.builds(Timestamp, st.integers(0, 3), st.integers(0, 3), regions)


@given(timestamps)
def test_encoding_round_trips(stamp: Timestamp) -> None:
    assert Timestamp.decode(stamp.encode()) == stamp


@given(st.lists(timestamps | crowded, max_size=20))
def test_encoded_timestamps_sort_like_the_timestamps(stamps: list[Timestamp]) -> None:
    assert sorted(stamps, key=Timestamp.encode) == sorted(stamps)


@given(st.integers(0, 10**9), st.integers(0, 100), regions, regions)
def test_ties_on_wall_and_logical_are_broken_by_region(
    wall: int, logical: int, first: str, second: str
) -> None:
    a, b = Timestamp(wall, logical, first), Timestamp(wall, logical, second)
    assert (a < b) == (first < second)
    assert (a.encode() < b.encode()) == (first < second)


def test_concurrent_writes_in_the_same_millisecond_order_by_region() -> None:
    eu = HybridLogicalClock("eu", physical=FakeClock()).now()
    us = HybridLogicalClock("us", physical=FakeClock()).now()
    assert (eu.wall_ms, eu.logical) == (us.wall_ms, us.logical)
    assert eu < us
    assert eu.encode() < us.encode()


def test_encoding_still_sorts_once_the_logical_counter_needs_seven_digits() -> None:
    # A clock whose physical time stays behind its last timestamp (after observing a remote
    # region up to max_drift_ms ahead, or after an NTP step back) counts up `logical`.
    clock = HybridLogicalClock("eu", physical=FakeClock(T0), last=Timestamp(T0 + 1, 999_999, "eu"))
    before = clock.last
    after = clock.now()
    assert before < after
    assert before.encode() < after.encode()
