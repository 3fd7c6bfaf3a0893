"""The checker's pure parts: stock replayed from an outbox, Temporal's down windows, the logs
read back, and the 5xx rule over them."""

from __future__ import annotations

import itertools
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geosaga.torture.audit.answers import no_5xx
from geosaga.torture.audit.evidence import Evidence, Region, Saga
from geosaga.torture.audit.faults import (
    Fault,
    Window,
    covered,
    every_worker_hit,
    merge,
    read_faults,
    skewed_beyond_bound,
    temporal_down,
)
from geosaga.torture.audit.once import once
from geosaga.torture.audit.requests import Exchange, read_exchanges
from geosaga.torture.audit.stock import Move, replay
from geosaga.torture.clientlog import ClientLog
from regions.hlc import DEFAULT_MAX_DRIFT_MS
from workflows.contract import CartCheckout, OrderInput, OrderLine

SKUS = ("A", "B")

moves = st.lists(
    st.builds(
        Move,
        kind=st.sampled_from(["set", "reserve", "release", "commit"]),
        sku=st.sampled_from(SKUS),
        units=st.integers(min_value=0, max_value=9),
    ),
    max_size=30,
)


@given(moves)
def test_on_hand_is_the_last_set_minus_the_commits_after_it(stream: list[Move]) -> None:
    replayed = replay(stream)

    for sku in SKUS:
        mine = [m for m in stream if m.sku == sku]
        sets = [i for i, m in enumerate(mine) if m.kind == "set"]
        start = sets[-1] if sets else -1
        base = mine[start].units if sets else 0
        committed = sum(m.units for m in mine[start + 1 :] if m.kind == "commit")
        assert replayed.on_hand.get(sku, 0) == base - committed
        assert replayed.reserved.get(sku, 0) == sum(
            m.units if m.kind == "reserve" else -m.units
            for m in mine
            if m.kind in ("reserve", "release", "commit")
        )
    assert replayed.sets == [(m.sku, m.units) for m in stream if m.kind == "set"]


@given(moves)
def test_a_level_set_again_with_no_commit_between_is_one_set(stream: list[Move]) -> None:
    replayed = replay(stream)

    for sku in SKUS:
        mine = [m for m in stream if m.sku == sku and m.kind in ("set", "commit")]
        repeats = [
            later
            for earlier, later in itertools.pairwise(mine)
            if earlier.kind == later.kind == "set" and earlier.units == later.units
        ]
        distinct = [level for s, level in replayed.distinct_sets if s == sku]
        assert len(distinct) == len([m for m in mine if m.kind == "set"]) - len(repeats)


def test_a_repeated_set_counts_again_once_a_commit_came_between() -> None:
    set_five = Move("set", "A", 5)
    replayed = replay(
        [set_five, Move("reserve", "A", 1), set_five, Move("commit", "A", 1), set_five]
    )

    assert replayed.sets == [("A", 5)] * 3
    assert replayed.distinct_sets == [("A", 5)] * 2
    assert replayed.on_hand == {"A": 5}


@given(moves)
def test_going_below_zero_is_noticed_where_it_happens(stream: list[Move]) -> None:
    replayed = replay(stream)

    dipped = []
    for end in range(1, len(stream) + 1):
        last = stream[end - 1]
        prefix = replay(stream[:end])
        taking = last.kind in ("release", "commit")
        if taking and (prefix.on_hand[last.sku] < 0 or prefix.reserved[last.sku] < 0):
            dipped.append(last.sku)
    assert [sku for sku, _ in replayed.below_zero] == dipped


def test_a_commit_before_any_set_goes_below_zero() -> None:
    replayed = replay([Move("commit", "A", 2, "o1"), Move("set", "A", 5)])

    assert replayed.below_zero == [("A", "commit 2 for o1 left on hand -2, reserved -2")]
    assert replayed.on_hand == {"A": 5}


spans = st.tuples(
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.one_of(st.none(), st.floats(min_value=0, max_value=30, allow_nan=False)),
)


def _kill(start: float, length: float | None) -> Fault:
    ended = None if length is None else start + length
    return Fault("temporal-kill", "temporal", start, ended, {})


@given(
    st.lists(spans, max_size=6),
    st.floats(min_value=0, max_value=10, allow_nan=False),
    st.floats(min_value=0, max_value=150, allow_nan=False),
)
def test_temporal_is_down_from_its_kill_until_it_answered_plus_grace(
    kills: list[tuple[float, float | None]], grace: float, moment: float
) -> None:
    faults = [_kill(start, length) for start, length in kills]
    faults.append(Fault("worker-kill", "us-east", 0.0, 200.0, {}))  # Temporal stayed up

    windows = temporal_down(faults, grace)

    expected = any(
        start <= moment <= (math.inf if length is None else start + length + grace)
        for start, length in kills
    )
    assert covered(windows, moment, moment) == expected
    assert all(a.end < b.start for a, b in itertools.pairwise(windows))


@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50)).map(sorted), max_size=8))
def test_merging_keeps_the_same_time_covered(pairs: list[list[float]]) -> None:
    windows = [Window(a, b) for a, b in pairs]

    merged = merge(windows)

    for point in [p for pair in pairs for p in pair] + [p + 0.5 for pair in pairs for p in pair]:
        assert covered(merged, point, point) == covered(windows, point, point)
    assert merge(merged) == merged


def test_a_request_spanning_the_outage_is_covered() -> None:
    windows = temporal_down([_kill(10.0, 2.0)], grace=5.0)

    assert covered(windows, 8.0, 30.0)
    assert covered(windows, 16.9, 18.0)
    assert not covered(windows, 17.1, 18.0)
    assert not covered(windows, 1.0, 9.9)


def test_only_skews_beyond_the_bound_explain_dead_letters() -> None:
    beyond = DEFAULT_MAX_DRIFT_MS + 1
    faults = [
        Fault("clock-skew", "us-east", 1, 2, {"offset_ms": 4_000}),
        Fault("clock-skew-beyond", "eu-west", 1, 2, {"offset_ms": -beyond}),
        Fault("clock-skew-beyond", "ap-south", 1, 2, {"offset_ms": DEFAULT_MAX_DRIFT_MS}),
    ]

    assert skewed_beyond_bound(faults) == {"eu-west"}


def test_the_harness_log_reads_back_its_last_line_per_request(tmp_path: Path) -> None:
    log = ClientLog(tmp_path / "client.jsonl", started=0.0)
    answered = log.send("orders", "POST", "/orders", {"Idempotency-Key": "k1"}, {"a": 1})
    log.end(answered, 202, {"order_id": "k1"})
    in_flight = log.send("carts", "PUT", "/carts/c/items/SKU-1", {"X-Region": "eu-west"}, {})
    log.close()
    with (tmp_path / "client.jsonl").open("a") as torn:
        torn.write('{"seq": 3, "actor": "ord')  # the harness was killed mid-line

    first, second = read_exchanges(tmp_path / "client.jsonl")

    assert (first.seq, first.status, first.key, first.order_id()) == (1, 202, "k1", "k1")
    assert (second.seq, second.lost, second.headers) == (
        in_flight.seq,
        True,
        {"x-region": "eu-west"},
    )


def test_a_torn_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "client.jsonl"
    path.write_text('{"seq": 1\n{"seq": 2, "sent_at": 1, "method": "GET", "path": "/x"}\n')

    with pytest.raises(ValueError, match=r"client\.jsonl:1"):
        read_exchanges(path)


def test_the_nemesis_log_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "nemesis.jsonl"
    lines = [
        {"kind": "temporal-kill", "target": "temporal", "started_at": 3.0, "ended_at": 5.5},
        {
            "kind": "clock-skew",
            "target": "eu-west",
            "started_at": 7,
            "ended_at": None,
            "params": {"offset_ms": -2000},
            "note": "still on",
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    assert read_faults(path) == [
        Fault("temporal-kill", "temporal", 3.0, 5.5, {}),
        Fault("clock-skew", "eu-west", 7.0, None, {"offset_ms": -2000}, "still on"),
    ]
    assert read_faults(tmp_path / "none.jsonl") == []


answers = st.lists(
    st.tuples(
        st.sampled_from([200, 202, 409, 500, 502, 503, 504, None]),
        st.floats(min_value=0, max_value=60, allow_nan=False),
    ),
    max_size=12,
)


@given(answers, st.lists(spans, max_size=3))
def test_a_5xx_is_allowed_only_as_a_503_while_temporal_was_down(
    sent: list[tuple[int | None, float]], kills: list[tuple[float, float | None]]
) -> None:
    exchanges = [
        Exchange(
            seq,
            "orders",
            at,
            None if status is None else at + 1.0,
            "POST",
            f"/orders/o{seq}/cancel",
            {},
            None,
            status,
            {"detail": "no"},
        )
        for seq, (status, at) in enumerate(sent)
    ]
    faults = [_kill(start, length) for start, length in kills]
    evidence = Evidence(exchanges, faults, [], {}, {}, {}, "us-east", temporal_grace_seconds=5.0)

    found = no_5xx(evidence)

    down = temporal_down(faults, 5.0)
    expected = [
        f"o{e.seq}"
        for e in exchanges
        if e.status is not None
        and e.status >= 500
        and not (e.status == 503 and covered(down, e.sent_at, e.answered_at))
    ]
    assert [v.orders[0] for v in found] == expected
    assert all(v.rule == "no-5xx" for v in found)


def test_a_503_from_the_saga_is_allowed_while_every_worker_was_down() -> None:
    """A cancel no worker answered in time (every region's worker killed, stopped or cut off
    at some moment of its wait) is an outage's 503; one while a worker stood by is not."""

    def cancel(seq: int, at: float, path: str = "/cancel") -> Exchange:
        return Exchange(
            seq, "orders", at, at + 20.0, "POST", f"/orders/o{seq}{path}", {}, None, 503, {}
        )

    faults = [
        Fault("worker-pause", "us-east", 10.0, 17.0, {}),
        Fault("temporal-cut", "eu-west", 12.0, 20.0, {}),
        Fault("worker-kill", "ap-south", 25.0, 27.0, {}),
    ]
    # Only the names count here: the region's store is not read by this rule.
    regions = cast(dict[str, Region], dict.fromkeys(("us-east", "eu-west", "ap-south")))
    exchanges = [
        cancel(1, 8.0),  # 8-28: all three down at some moment
        cancel(2, 33.0),  # 33-53: only ap-south's grace overlaps
        cancel(3, 8.0, "/retry"),  # a rerun is no update: Temporal answers it alone
    ]
    evidence = Evidence(
        exchanges,
        faults,
        [],
        {},
        regions,
        {},
        "us-east",
        temporal_grace_seconds=5.0,
    )

    assert [v.orders for v in no_5xx(evidence)] == [("o2",), ("o3",)]
    assert every_worker_hit(faults, regions, 8.0, 28.0, 5.0)
    assert not every_worker_hit(faults, regions, 8.0, 11.0, 5.0)
    assert not every_worker_hit(faults, {}, 8.0, 28.0, 5.0)


def _checkout(seq: int, at: float, status: int) -> Exchange:
    return Exchange(
        seq,
        "carts",
        at,
        at + 0.5,
        "POST",
        "/carts/alice/checkout",
        {"idempotency-key": "k-cart", "x-region": "eu-west"},
        {"payment_token": "tok_ok"},
        status,
        {"order_id": "k-cart"} if status == 202 else {"detail": "the cart is empty"},
    )


def test_a_checkout_refused_while_its_cart_was_empty_is_no_second_answer() -> None:
    order = OrderInput(
        order_id="k-cart",
        customer_id="alice",
        home_region="eu-west",
        currency="USD",
        lines=[OrderLine(sku="SKU-1", quantity=2, unit_price=Decimal("12.50"))],
        payment_token="tok_ok",
        regions={},
        cart=CartCheckout(customer_id="alice", region="eu-west", versions={}),
    )
    saga = Saga("k-cart", "COMPLETED", None, order)
    exchanges = [_checkout(1, 1.0, 409), _checkout(2, 5.0, 202)]

    def found(sent: list[Exchange]) -> list[str]:
        evidence = Evidence(sent, [], [], {"k-cart": saga}, {}, {}, "us-east")
        return [v.detail for v in once(evidence)]

    assert found(exchanges) == []
    assert found([*exchanges, _checkout(3, 9.0, 409)]) == [
        "k-cart: #3 POST /carts/alice/checkout was answered 409 though the same body was "
        "accepted before"
    ]
    # The default region stands in for a missing X-Region: another body, so 409 is right.
    elsewhere = _checkout(4, 9.0, 409)
    elsewhere = Exchange(**{**elsewhere.__dict__, "headers": {"idempotency-key": "k-cart"}})
    assert found([*exchanges, elsewhere]) == []


def _rerun(seq: int, status: int | None) -> Exchange:
    return Exchange(seq, "operator", 1.0, 1.5, "POST", "/orders/o1/retry", {}, None, status, None)


def test_a_rerun_counts_unless_it_was_refused() -> None:
    """Seed 103 on PostgreSQL at 5 min: Temporal was killed after it took a reset and before
    it answered, so the rerun answered 503 and still ran."""
    twice = {"o1": Saga("o1", "COMPLETED", None, None, runs=2)}

    def found(sent: list[Exchange]) -> list[str]:
        evidence = Evidence(sent, [], [], twice, {}, {}, "us-east")
        return [v.rule for v in once(evidence) if v.orders == ("o1",)]

    assert found([]) == ["once"]
    assert found([_rerun(1, 409)]) == ["once"]
    assert found([_rerun(1, 202)]) == []
    assert found([_rerun(1, None)]) == []
    assert found([_rerun(1, 503)]) == []
