"""A region store's failures: which are the store's, how they read, and the retries."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from geosaga.torture.schedule import DURATIONS, Kind
from regions.unavailable import (
    RECONNECT_PAUSES,
    StoreUnavailable,
    retried_if_disconnected,
    store_failure,
    unavailable,
)


def killed() -> OperationalError:
    error = OperationalError(
        "UPDATE stock SET on_hand=%(on_hand)s", {"on_hand": 9}, Exception("terminated\nDETAIL")
    )
    error.connection_invalidated = True
    return error


def test_a_lost_connection_is_the_stores_failure_and_reads_as_the_drivers_first_line() -> None:
    said = unavailable("eu-west", killed())

    assert store_failure(killed())
    assert not store_failure(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert str(said) == "the eu-west store is unavailable: terminated"
    assert said.disconnected


def test_a_call_whose_connection_was_killed_is_tried_again_a_few_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bool] = []
    paused: list[float] = []
    monkeypatch.setattr("regions.unavailable.time.sleep", paused.append)

    @retried_if_disconnected
    def write(fail: int) -> int:
        calls.append(True)
        if len(calls) <= fail:
            raise StoreUnavailable("eu-west", "terminated", disconnected=True)
        return len(calls)

    assert write(1) == 2
    calls.clear()
    assert write(6) == 7  # six killed in a row: the seventh try gets through
    calls.clear()
    paused.clear()
    with pytest.raises(StoreUnavailable):
        write(7)
    assert len(calls) == 7
    assert paused == list(RECONNECT_PAUSES)


def test_the_tries_outlast_the_longest_storm_of_terminated_backends() -> None:
    """`geosaga torture --seed 113 --minutes 5 --store postgres`: backends of one store were
    terminated every 0.25 s for 3 s, and four tries within 0.4 s all died."""
    longest = DURATIONS[Kind.PG_TERMINATE][1]

    assert sum(RECONNECT_PAUSES) > longest


def test_a_store_that_timed_out_is_not_tried_again() -> None:
    calls: list[bool] = []

    @retried_if_disconnected
    def write() -> None:
        calls.append(True)
        raise StoreUnavailable("eu-west", "database is locked")

    with pytest.raises(StoreUnavailable, match="database is locked"):
        write()
    assert len(calls) == 1
