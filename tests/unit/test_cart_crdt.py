"""The cart CRDT: merge algebra, one result under any delivery order, and the removal window.

The property tests run random histories in three regions beside an oracle that knows what each
writer really saw (exact sets of dots, no version vectors, nothing pruned), so they check the
compressed per-SKU contexts and the pruning as well as convergence.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regions.cart import DEFAULT_WINDOW_MS, CartOp, CartState, Dot
from regions.hlc import HybridLogicalClock, Timestamp

REGIONS = ("ap", "eu", "us")
SKUS = ("sku-1", "sku-2", "sku-3")
WINDOWS = (0, 1, 1_000, DEFAULT_WINDOW_MS)
MINUTE = 60_000
T0 = 1_700_000_000_000


# --- a simulated world: three regions, injectable clocks, any delivery order -----------------


@dataclass
class Replica:
    region: str
    clock: HybridLogicalClock
    state: CartState = field(default_factory=CartState)
    # The oracle's view, kept beside the CRDT and never pruned:
    delivered: set[CartOp] = field(default_factory=set)
    known: defaultdict[str, frozenset[Dot]] = field(default_factory=lambda: defaultdict(frozenset))
    dead: set[CartOp] = field(default_factory=set)  # ops this replica held and has pruned


class World:
    def __init__(self, skews: dict[str, int]) -> None:
        self.time = T0
        self.skews = skews
        self.replicas = [
            Replica(r, HybridLogicalClock(r, physical=self._physical(r))) for r in REGIONS
        ]
        self.ops: list[CartOp] = []
        self.observed: dict[Dot, frozenset[Dot]] = {}  # what each op's writer had seen of its SKU
        self.snapshots: list[CartState] = []

    def _physical(self, region: str) -> Callable[[], int]:
        return lambda: self.time + self.skews[region]

    def write(self, replica: Replica, sku: str, quantity: int | None) -> CartOp:
        hlc = replica.clock.now()
        if quantity is None:
            op = replica.state.write_remove(replica.region, sku, hlc)
        else:
            op = replica.state.write_set(replica.region, sku, quantity, hlc)
        own = sum(1 for other in self.ops if other.dot.region == replica.region)
        assert op.dot == Dot(replica.region, own + 1), "dots must number each region's writes"
        self.observed[op.dot] = replica.known[sku]
        assert self._covered(op) == self.observed[op.dot], "context must say exactly what it saw"
        self.ops.append(op)
        self._update(replica, replica.state.apply(op), [op])
        return op

    def deliver(self, replica: Replica, op: CartOp) -> None:
        replica.clock.observe(op.hlc)
        self._update(replica, replica.state.apply(op), [op])

    def sync(self, replica: Replica, source: Replica) -> None:
        """State-based anti-entropy: the replica merges another one's whole state."""
        replica.clock.observe(source.clock.last)
        self._update(replica, replica.state.merge(source.state), source.delivered)
        for sku, dots in source.known.items():
            replica.known[sku] |= dots

    def _update(self, replica: Replica, state: CartState, received: Iterable[CartOp]) -> None:
        before = replica.state
        for op in received:
            replica.delivered.add(op)
            replica.known[op.sku] |= {op.dot} | self.observed[op.dot]
        replica.state = state
        replica.dead |= before.ops - state.ops
        self.snapshots.append(state)
        assert not replica.dead & state.ops, "a pruned op came back"
        assert all(state.context().get(r, 0) >= n for r, n in before.context().items())
        for window in WINDOWS:
            assert state.items(window) == self.oracle(replica.delivered, window)

    def _covered(self, op: CartOp) -> frozenset[Dot]:
        """The same-SKU dots that op.context (a version vector) claims the writer saw."""
        return frozenset(o.dot for o in self.ops if o.sku == op.sku and op.saw(o))

    def oracle(self, ops: set[CartOp], window_ms: int) -> dict[str, int]:
        """The cart rule applied to the whole unpruned history, with exact knowledge."""

        def saw(a: CartOp, b: CartOp) -> bool:
            return a.sku == b.sku and b.dot in self.observed[a.dot]

        def hides(remove: CartOp, set_op: CartOp) -> bool:
            concurrent = not saw(remove, set_op) and not saw(set_op, remove)
            age = remove.hlc.wall_ms - set_op.hlc.wall_ms
            same_sku = remove.sku == set_op.sku
            return remove.kind == "remove" and same_sku and concurrent and 0 <= age < window_ms

        cart: defaultdict[str, int] = defaultdict(int)
        for op in ops:
            if op.kind == "set" and not any(saw(o, op) or hides(o, op) for o in ops):
                cart[op.sku] += op.quantity
        return {sku: quantity for sku, quantity in sorted(cart.items()) if quantity > 0}


def run_history(data: st.DataObject) -> World:
    """Local writes interleaved with deliveries of any op (late, early, again) and state syncs."""
    skews = data.draw(st.fixed_dictionaries({r: st.integers(-5_000, 5_000) for r in REGIONS}))
    world = World(skews)
    for _ in range(data.draw(st.integers(0, 30), label="steps")):
        replica = data.draw(st.sampled_from(world.replicas))
        action = data.draw(
            st.sampled_from(("write", "write", "deliver", "deliver", "sync", "tick"))
        )
        if action == "write":
            sku = data.draw(st.sampled_from(SKUS))
            world.write(replica, sku, data.draw(st.none() | st.integers(0, 5)))
        elif action == "deliver" and world.ops:
            world.deliver(replica, data.draw(st.sampled_from(world.ops)))
        elif action == "sync":
            world.sync(replica, data.draw(st.sampled_from(world.replicas)))
        elif action == "tick":  # spans the window: some ops land inside it, some outside
            world.time += data.draw(st.integers(0, 2 * MINUTE))
    return world


# --- properties --------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.data())
def test_every_delivery_order_ends_in_one_cart(data: st.DataObject) -> None:
    world = run_history(data)
    for replica in world.replicas:
        extra = data.draw(st.lists(st.sampled_from(world.ops), max_size=5)) if world.ops else []
        for op in data.draw(st.permutations(world.ops + extra)):
            world.deliver(replica, op)
    everything = CartState.of(world.ops)
    for replica in world.replicas:
        assert replica.state == everything
        for window in WINDOWS:
            assert replica.state.items(window) == everything.items(window)


@settings(deadline=None)
@given(st.data())
def test_merge_is_commutative_associative_and_idempotent(data: st.DataObject) -> None:
    world = run_history(data)
    snapshots = st.sampled_from(world.snapshots or [CartState()])
    a, b, c = data.draw(snapshots), data.draw(snapshots), data.draw(snapshots)
    pairs = [
        (a.merge(b), b.merge(a)),
        (a.merge(b).merge(c), a.merge(b.merge(c))),
        (a.merge(a), a),
    ]
    for left, right in pairs:
        assert left.ops == right.ops
        for window in WINDOWS:
            assert left.items(window) == right.items(window)


@settings(deadline=None)
@given(st.data())
def test_applying_ops_one_by_one_is_merging_them(data: st.DataObject) -> None:
    world = run_history(data)
    state = CartState()
    for op in data.draw(st.permutations(world.ops)):
        state = state.apply(op)
    assert state == CartState.of(world.ops) == CartState().merge(CartState.of(world.ops))


@given(st.data())
def test_ops_survive_a_round_trip_through_json(data: st.DataObject) -> None:
    world = run_history(data)
    for op in world.ops:
        assert CartOp.from_dict(json.loads(json.dumps(op.to_dict()))) == op


# --- readable examples -------------------------------------------------------------------------


def ts(wall_ms: int, region: str, logical: int = 0) -> Timestamp:
    return Timestamp(T0 + wall_ms, logical, region)


def put(state: CartState, region: str, sku: str, quantity: int, at: int) -> CartOp:
    return state.write_set(region, sku, quantity, ts(at, region))


def delete(state: CartState, region: str, sku: str, at: int) -> CartOp:
    return state.write_remove(region, sku, ts(at, region))


def test_concurrent_sets_in_two_regions_add_up() -> None:
    eu = put(CartState(), "eu", "mug", 2, at=0)
    us = put(CartState(), "us", "mug", 3, at=5)
    assert CartState.of([eu, us]).items() == {"mug": 5}


def test_a_set_that_saw_an_earlier_one_replaces_it() -> None:
    first = put(CartState(), "eu", "mug", 2, at=0)
    second = put(CartState.of([first]), "us", "mug", 7, at=5)
    assert second.saw(first)
    assert CartState.of([first, second]).items() == {"mug": 7}
    assert CartState.of([second, first]).ops == {second}, "the replaced op is pruned"


def test_a_remove_wins_over_sets_it_saw_however_old() -> None:
    old = put(CartState(), "eu", "mug", 2, at=0)
    remove = delete(CartState.of([old]), "us", "mug", at=10 * MINUTE)
    assert CartState.of([old, remove]).items() == {}


def test_a_remove_wins_over_a_concurrent_set_made_less_than_the_window_before_it() -> None:
    remove = delete(CartState(), "us", "mug", at=MINUTE)
    for made_at in (1, MINUTE // 2, MINUTE):
        concurrent = put(CartState(), "eu", "mug", 2, at=made_at)
        assert CartState.of([concurrent, remove]).items() == {}


def test_a_concurrent_set_made_a_window_or_more_before_the_remove_survives_it() -> None:
    remove = delete(CartState(), "us", "mug", at=MINUTE)
    assert CartState.of([put(CartState(), "eu", "mug", 2, at=0), remove]).items() == {"mug": 2}
    state = CartState.of([put(CartState(), "eu", "mug", 2, at=-1), remove])
    assert state.items() == {"mug": 2}
    assert state.items(window_ms=MINUTE + 2) == {}, "the window is configurable"


def test_a_concurrent_set_made_after_the_remove_survives_it() -> None:
    remove = delete(CartState(), "us", "mug", at=MINUTE)
    later = put(CartState(), "eu", "mug", 2, at=MINUTE + 1)
    assert CartState.of([later, remove]).items() == {"mug": 2}


def test_a_set_after_a_remove_does_not_bring_back_what_the_remove_beat() -> None:
    """The remove is kept although a later set saw it: it still beats the concurrent add."""
    eu_add = put(CartState(), "eu", "mug", 2, at=0)
    remove = delete(CartState(), "us", "mug", at=10)
    us = CartState.of([remove])
    us_add = put(us, "us", "mug", 1, at=20)
    assert us_add.saw(remove)
    assert remove.concurrent(eu_add)
    assert CartState.of([remove, us_add, eu_add]).items() == {"mug": 1}


def test_a_late_duplicate_of_a_pruned_op_stays_dead() -> None:
    add = put(CartState(), "eu", "mug", 2, at=0)
    eu = CartState.of([add])
    replace = put(eu, "eu", "mug", 4, at=1)
    us = CartState.of([add, replace])
    remove = delete(us, "us", "mug", at=2)
    us = us.apply(remove)
    assert us.ops == {remove}
    for late in (add, replace, add):
        us = us.apply(late)
        assert us.items() == {}
        assert us.ops == {remove}


def test_a_set_does_not_replace_an_add_it_only_heard_of_through_another_sku() -> None:
    """A cart-wide version vector would claim `mug` as seen by ap because `tea` was written after
    it in eu; ap never saw the mug, so its own mug is concurrent and the two add up."""
    mug = put(CartState(), "eu", "mug", 2, at=0)
    tea = put(CartState.of([mug]), "eu", "tea", 1, at=1)
    ap = CartState.of([tea])  # tea arrives first
    ap_mug = put(ap, "ap", "mug", 3, at=2)
    assert ap.context() == {"eu": 2}
    assert not ap_mug.saw(mug)
    assert ap.apply(ap_mug).apply(mug).items() == {"mug": 5, "tea": 1}


def test_is_conflict_flags_ops_concurrent_with_a_live_set_from_another_region() -> None:
    eu_add = put(CartState(), "eu", "mug", 2, at=0)
    eu = CartState.of([eu_add])
    us_add = put(CartState(), "us", "mug", 3, at=1)
    us_remove = delete(CartState(), "us", "mug", at=2)
    assert eu.is_conflict(us_add)
    assert eu.apply(us_add).is_conflict(us_add), "the same answer after applying it"
    assert eu.is_conflict(us_remove)
    assert eu.apply(us_remove).is_conflict(us_remove)
    assert not eu.is_conflict(put(eu, "eu", "mug", 5, at=3)), "own region, saw it"
    assert not eu.is_conflict(put(eu, "us", "mug", 5, at=3)), "saw it"
    assert not eu.is_conflict(put(CartState(), "us", "tea", 1, at=3)), "another SKU"
    hidden = eu.apply(delete(eu, "ap", "mug", at=4))
    assert not hidden.is_conflict(us_add), "nothing live to conflict with"


def test_local_writes_number_their_dots_and_record_what_they_saw() -> None:
    eu = CartState()
    first = put(eu, "eu", "mug", 1, at=0)
    eu = eu.apply(first)
    us_op = put(CartState(), "us", "tea", 1, at=0)
    eu = eu.apply(us_op)
    second = delete(eu, "eu", "mug", at=1)
    assert (first.dot, first.context) == (Dot("eu", 1), ())
    assert (second.dot, second.context) == (Dot("eu", 2), (("eu", 1),))
    third = put(eu.apply(second), "eu", "tea", 4, at=2)
    assert (third.dot, third.context) == (Dot("eu", 3), (("us", 1),))


def test_ops_are_hashable_and_convert_to_plain_dicts() -> None:
    op = put(CartState.of([put(CartState(), "us", "mug", 1, at=0)]), "eu", "mug", 2, at=0)
    assert op.to_dict() == {
        "dot": {"region": "eu", "counter": 1},
        "sku": "mug",
        "kind": "set",
        "quantity": 2,
        "hlc": ts(0, "eu").encode(),
        "context": {"us": 1},
    }
    assert CartOp.from_dict(op.to_dict()) == op
    assert len({op, CartOp.from_dict(op.to_dict())}) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "add"},
        {"quantity": -1},
        {"kind": "remove", "quantity": 1},
        {"quantity": "2"},
        {"quantity": True},
        {"dot": {"region": "eu", "counter": 0}},
        {"context": {"us": "1"}},
        {"context": [["us", 1]]},
    ],
)
def test_malformed_ops_are_refused(change: dict[str, object]) -> None:
    data = put(CartState(), "eu", "mug", 2, at=0).to_dict() | change
    with pytest.raises((ValueError, TypeError)):
        CartOp.from_dict(data)


def test_writes_need_a_timestamp_from_their_own_region_and_a_sane_quantity() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        CartState().write_set("eu", "mug", 1, ts(0, "us"))
    with pytest.raises(ValueError, match="quantity"):
        CartState().write_set("eu", "mug", -1, ts(0, "eu"))
    with pytest.raises(ValueError, match="window"):
        CartState().items(window_ms=-1)


def test_a_zero_quantity_leaves_the_sku_out() -> None:
    zero = put(CartState(), "eu", "mug", 0, at=0)
    assert CartState.of([zero]).items() == {}
