from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway import ledger
from gateway.schemas import MAX_LEDGER_PAGE, LedgerEntryView, LedgerPage
from gateway.state import StoreDep

router = APIRouter(tags=["ledger"])


@router.get("/ledger")
def read_ledger(
    store: StoreDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LEDGER_PAGE)] = MAX_LEDGER_PAGE,
) -> LedgerPage:
    """Ledger entries after `after`, oldest first."""
    with store.reading() as session:
        entries = [LedgerEntryView.of(row) for row in ledger.page(session, after, limit)]
    return LedgerPage(entries=entries, next=entries[-1].seq if entries else after)
