"""Customers' carts in one region's store: edits made here and ones replicated from elsewhere.

The merge is the CRDT in regions/cart.py; this module keeps its operations in the region's
store and publishes each local one as a CartChanged event in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session, select

from regions import clock
from regions.cart import CartOp, CartState
from regions.events import CartChanged
from regions.models import CartOperation
from regions.outbox import record_event
from regions.unavailable import retried_if_disconnected

if TYPE_CHECKING:  # regions.store imports this module through regions.views
    from regions.store import Store


@dataclass(frozen=True)
class Snapshot:
    """A cart as read: what it shows, and per SKU the versions that make it up."""

    items: dict[str, int]
    versions: dict[str, dict[str, int]]


@retried_if_disconnected
def read(store: Store, customer_id: str, window_ms: int) -> Snapshot:
    with store.reading() as session:
        state = _load(session, customer_id)
    items = state.items(window_ms)
    return Snapshot(items, {sku: state.sku_context(sku) for sku in items})


# Run twice, the second write saw the first and replaces it: the cart ends the same.
@retried_if_disconnected
def set_quantity(
    store: Store, customer_id: str, sku: str, quantity: int | None, window_ms: int
) -> dict[str, int]:
    """Sets a SKU's quantity here (None removes it); returns the cart as this region sees it."""
    with store.transaction() as session:
        state = _load(session, customer_id)
        stamp = clock.tick(session, store.region)
        op = (
            state.write_remove(store.region, sku, stamp)
            if quantity is None
            else state.write_set(store.region, sku, quantity, stamp)
        )
        after = _write(session, store.region, customer_id, state, op)
    return after.items(window_ms)


def clear(
    session: Session, region: str, customer_id: str, checked_out: Mapping[str, Mapping[str, int]]
) -> None:
    """Takes a checkout's items out of the cart; what was added since stays."""
    state = _load(session, customer_id)
    for sku, seen in sorted(checked_out.items()):
        op = state.write_clear(region, sku, clock.tick(session, region), seen)
        state = _write(session, region, customer_id, state, op)


def receive(session: Session, event: CartChanged) -> bool:
    """Merges an operation from another region; True if it was concurrent with a live one."""
    op = CartOp.from_dict(event.operation)
    state = _load(session, event.customer_id)
    # Counted with no window: any concurrent live set of the SKU is a conflict to report.
    conflict = state.is_conflict(op, window_ms=0)
    _save(session, event.customer_id, state, state.apply(op))
    return conflict


def _write(
    session: Session, region: str, customer_id: str, state: CartState, op: CartOp
) -> CartState:
    after = state.apply(op)
    _save(session, customer_id, state, after)
    record_event(
        session, region, CartChanged(customer_id=customer_id, operation=op.to_dict()), customer_id
    )
    return after


def _load(session: Session, customer_id: str) -> CartState:
    rows = session.exec(select(CartOperation).where(CartOperation.customer_id == customer_id))
    return CartState.of(CartOp.from_dict(json.loads(row.operation)) for row in rows)


def _save(session: Session, customer_id: str, before: CartState, after: CartState) -> None:
    """Stores the ops the merge kept and drops those it pruned."""
    for op in after.ops - before.ops:
        session.add(
            CartOperation(
                customer_id=customer_id,
                dot_region=op.dot.region,
                dot_counter=op.dot.counter,
                sku=op.sku,
                operation=json.dumps(op.to_dict(), sort_keys=True),
            )
        )
    for op in before.ops - after.ops:
        row = session.get(CartOperation, (customer_id, op.dot.region, op.dot.counter))
        if row is not None:
            session.delete(row)
