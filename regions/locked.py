"""Rows a write transaction has locked, read once and kept for the rest of it.

A step that writes several events ticks the clock and bumps a sequence counter per event, and
reads each locked row once a transaction, without a flush. The rows live in `Session.info`,
tagged with the transaction, so a later transaction on the same session reads them afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from sqlmodel import Session

T = TypeVar("T")


def once_per_transaction(session: Session, key: Hashable, load: Callable[[], T]) -> T:
    transaction = session.get_transaction()
    kept = session.info.get(key)
    if kept is not None and kept[0] is transaction:
        row: T = kept[1]
        return row
    with session.no_autoflush:
        row = load()
    session.info[key] = (transaction, row)
    return row
