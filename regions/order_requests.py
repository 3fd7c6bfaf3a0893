"""The keys orders were accepted under: what makes an `Idempotency-Key` good for one order for
good, not only for as long as Temporal keeps the saga."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError

from regions.models import OrderRequest, OrderView
from regions.store import Store
from regions.unavailable import retried_if_disconnected


@retried_if_disconnected
def find(stores: Iterable[Store], order_id: str) -> tuple[Store, OrderRequest] | None:
    """The key's record and the store that keeps it: its home region's, wherever that is."""
    for store in stores:
        with store.reading() as session:
            kept = session.get(OrderRequest, order_id)
        if kept is not None:
            return store, kept
    return None


@retried_if_disconnected
def keep(store: Store, order_id: str, request_sha256: str, *, started: bool) -> OrderRequest:
    """Records the key (or marks it started); returns the record as it now stands, which may
    be another request's if one kept the key first."""
    try:
        with store.transaction() as session:
            kept = session.get(OrderRequest, order_id)
            if kept is None:
                kept = OrderRequest(order_id=order_id, request_sha256=request_sha256)
            if started and kept.request_sha256 == request_sha256:
                kept.started = True
            session.add(kept)
        return kept
    except IntegrityError:
        # Another request kept the same key a moment earlier: its record stands.
        with store.reading() as session:
            winner = session.get(OrderRequest, order_id)
        if winner is None:
            raise
        return winner


@retried_if_disconnected
def recorded_status(store: Store, order_id: str) -> str | None:
    """The status the store's view of the order last recorded, if it has one."""
    with store.reading() as session:
        view = session.get(OrderView, order_id)
    return view.status if view is not None else None
