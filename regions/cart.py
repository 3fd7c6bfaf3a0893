"""The shopping cart as a CRDT: per-SKU "set quantity" and "remove" operations from any region.

Written by hand rather than on a CRDT library: `loro` (1.17, checked) decides a concurrent map
insert against a delete by Lamport clock and peer id, keeps one of two concurrent inserts (no sum),
drops increments to a deleted counter outright and never reads wall time, so neither "concurrent
sets add up" nor "a remove beats concurrent adds made less than a window before it by HLC wall
time" can be expressed with it. Here the operations themselves are the state and visibility is
decided when the cart is read.

Rules (window_ms is a read-time parameter, default one minute):
- an op SAW another op of its SKU iff the writer had that op, or an op of the SKU that saw it, when
  writing; two ops of a SKU are concurrent iff neither saw the other;
- a set op is live unless an op of its SKU saw it, or a concurrent remove was made less than
  window_ms after it (0 <= remove - set < window_ms, HLC wall ms); a SKU's quantity is the sum of
  its live set ops, so concurrent sets from different regions add up.

Contexts are per SKU, not per cart: with out-of-order delivery a cart-wide version vector claims
ops the writer only heard of through another SKU's op, so a set would silently replace a
concurrent add it never saw. Removes are never pruned: one still beats concurrent adds that are in
flight after a later op has seen it, and only causal stability (not known here) could retire it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from regions.hlc import Timestamp

DEFAULT_WINDOW_MS = 60_000

OpKind = Literal["set", "remove"]
VersionVector = tuple[tuple[str, int], ...]
"""Sorted (region, counter) pairs with counter >= 1: hashable, one entry per region."""


@dataclass(frozen=True, order=True)
class Dot:
    """One write: the region that made it and that region's per-cart write counter (from 1)."""

    region: str
    counter: int


def version_vector(entries: Mapping[str, int]) -> VersionVector:
    """The canonical (sorted, zero-free) form of a {region: counter} mapping."""
    return tuple(sorted((region, counter) for region, counter in entries.items() if counter > 0))


@dataclass(frozen=True)
class CartOp:
    """A set/remove of one SKU. `context` is what the writer had seen of that SKU when writing."""

    dot: Dot
    sku: str
    kind: OpKind
    quantity: int
    hlc: Timestamp
    context: VersionVector = ()

    def __post_init__(self) -> None:
        if self.kind not in ("set", "remove"):
            raise ValueError(f"unknown cart op kind {self.kind!r}")
        if self.quantity < 0 or (self.kind == "remove" and self.quantity != 0):
            raise ValueError(f"bad quantity {self.quantity} for a {self.kind} op")
        if self.dot.counter < 1:
            raise ValueError(f"dot counters start at 1, got {self.dot}")
        if self.context != version_vector(dict(self.context)):
            raise ValueError(f"context must be sorted, unique and positive: {self.context}")

    def saw(self, other: CartOp) -> bool:
        """True iff this op was written with `other` (same SKU) in view, so it overrides it."""
        return self.sku == other.sku and _entry(self.context, other.dot.region) >= (
            other.dot.counter
        )

    def concurrent(self, other: CartOp) -> bool:
        return self.dot != other.dot and not self.saw(other) and not other.saw(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (for the cart table and event payloads)."""
        return {
            "dot": {"region": self.dot.region, "counter": self.dot.counter},
            "sku": self.sku,
            "kind": self.kind,
            "quantity": self.quantity,
            "hlc": self.hlc.encode(),
            "context": dict(self.context),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CartOp:
        """The inverse of `to_dict`; raises ValueError/KeyError/TypeError on a malformed op."""
        dot, kind, context = data["dot"], data["kind"], data["context"]
        if kind not in ("set", "remove"):
            raise ValueError(f"unknown cart op kind {kind!r}")
        if not isinstance(dot, Mapping) or not isinstance(context, Mapping):
            raise TypeError(f"dot and context must be objects: {dot!r}, {context!r}")
        if not all(isinstance(r, str) and type(c) is int for r, c in context.items()):
            raise TypeError(f"context must map region names to ints: {context!r}")
        return cls(
            dot=Dot(_str(dot["region"]), _int(dot["counter"])),
            sku=_str(data["sku"]),
            kind=kind,
            quantity=_int(data["quantity"]),
            hlc=Timestamp.decode(_str(data["hlc"])),
            context=version_vector(context),
        )


@dataclass(frozen=True)
class CartState:
    """An immutable replica: the ops that can still matter (constructing one prunes the rest)."""

    ops: frozenset[CartOp] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", _prune(self.ops))

    @classmethod
    def of(cls, ops: Iterable[CartOp]) -> CartState:
        return cls(frozenset(ops))

    def apply(self, op: CartOp) -> CartState:
        """Adds one local or received op; duplicates and late arrivals are harmless."""
        return self if op in self.ops else CartState(self.ops | {op})

    def merge(self, other: CartState) -> CartState:
        return CartState(self.ops | other.ops)

    def context(self) -> dict[str, int]:
        """Highest counter known per region (dots and contexts, so pruning never lowers it).

        Only this region's own entry is exact; it numbers the next local write.
        """
        return _max_vector(self.ops)

    def sku_context(self, sku: str) -> dict[str, int]:
        """What this replica has seen of one SKU: the context of its next write to that SKU."""
        return _max_vector(op for op in self.ops if op.sku == sku)

    def items(self, window_ms: int = DEFAULT_WINDOW_MS) -> dict[str, int]:
        """The cart as shown: SKU -> quantity, SKUs without a live quantity left out."""
        if window_ms < 0:
            raise ValueError("window_ms must not be negative")
        cart = {}
        for sku, ops in sorted(_by_sku(self.ops).items()):
            quantity = sum(op.quantity for op in _live(ops, window_ms))
            if quantity > 0:
                cart[sku] = quantity
        return cart

    def write_set(self, region: str, sku: str, quantity: int, hlc: Timestamp) -> CartOp:
        """The op for a local "set SKU to quantity" (PUT); apply it, then ship it."""
        return self._write(region, sku, "set", quantity, hlc)

    def write_remove(self, region: str, sku: str, hlc: Timestamp) -> CartOp:
        """The op for a local "remove SKU" (DELETE); apply it, then ship it."""
        return self._write(region, sku, "remove", 0, hlc)

    def write_clear(self, region: str, sku: str, hlc: Timestamp, seen: Mapping[str, int]) -> CartOp:
        """A set to 0 of exactly the versions in `seen` (a checkout's snapshot of the SKU).

        Adds made after the snapshot are concurrent with it, so they stay; and as it is a set,
        not a remove, the removal window does not reach them.
        """
        op = self._write(region, sku, "set", 0, hlc)
        return CartOp(op.dot, op.sku, op.kind, op.quantity, op.hlc, version_vector(seen))

    def is_conflict(self, op: CartOp, window_ms: int = DEFAULT_WINDOW_MS) -> bool:
        """Whether `op` is concurrent with a set of its SKU from another region that is live here
        (ignoring `op` itself, so it answers the same before and after applying it)."""
        ops = [other for other in self.ops if other.sku == op.sku and other != op]
        return any(
            other.dot.region != op.dot.region and other.concurrent(op)
            for other in _live(ops, window_ms)
        )

    def _write(self, region: str, sku: str, kind: OpKind, quantity: int, hlc: Timestamp) -> CartOp:
        if hlc.region != region:
            raise ValueError(f"a write in {region} needs a timestamp from {region}, got {hlc}")
        counter = self.context().get(region, 0) + 1
        return CartOp(
            dot=Dot(region, counter),
            sku=sku,
            kind=kind,
            quantity=quantity,
            hlc=hlc,
            context=version_vector(self.sku_context(sku)),
        )


def _live(ops: Iterable[CartOp], window_ms: int) -> list[CartOp]:
    ops = list(ops)
    removes = [op for op in ops if op.kind == "remove"]
    return [
        op
        for op in ops
        if op.kind == "set"
        and not any(other.saw(op) for other in ops)
        and not any(_hides(remove, op, window_ms) for remove in removes)
    ]


def _hides(remove: CartOp, set_op: CartOp, window_ms: int) -> bool:
    """A remove beats a concurrent set made less than window_ms before it (or at the same ms)."""
    age = remove.hlc.wall_ms - set_op.hlc.wall_ms
    return 0 <= age < window_ms and remove.concurrent(set_op)


def _prune(ops: frozenset[CartOp]) -> frozenset[CartOp]:
    """Drops set ops that another op of their SKU saw: they can never be live again, and a late
    duplicate stays dead because whoever saw it also saw (context) all it saw."""
    kept = [
        op
        for group in _by_sku(ops).values()
        for op in group
        if op.kind == "remove" or not any(other.saw(op) for other in group)
    ]
    return ops if len(kept) == len(ops) else frozenset(kept)


def _by_sku(ops: Iterable[CartOp]) -> dict[str, list[CartOp]]:
    groups: defaultdict[str, list[CartOp]] = defaultdict(list)
    for op in ops:
        groups[op.sku].append(op)
    return groups


def _max_vector(ops: Iterable[CartOp]) -> dict[str, int]:
    vector: dict[str, int] = {}
    for op in ops:
        for region, counter in (*op.context, (op.dot.region, op.dot.counter)):
            vector[region] = max(vector.get(region, 0), counter)
    return vector


def _entry(vector: VersionVector, region: str) -> int:
    return next((counter for r, counter in vector if r == region), 0)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an int, got {value!r}")
    return value
