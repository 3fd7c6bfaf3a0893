"""Keeping an order's key survives one connection killed under it (pg_terminate_backend, a
failover): the API answers 202, not 503, when the store itself is up (found by
`geosaga torture`, seeds 2 and 4 on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from sqlmodel import Session

from regions import order_requests
from regions.store import Store
from regions.unavailable import StoreUnavailable


class _KilledOnce:
    """A store whose next write transaction loses its connection, as a killed backend's does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.killed = False
        self.original = store.transaction

    def transaction(self) -> AbstractContextManager[Session]:
        if not self.killed:
            self.killed = True
            return self._dead()
        return self.original()

    @contextmanager
    def _dead(self) -> Iterator[Session]:
        raise StoreUnavailable(
            self.store.region,
            "terminating connection due to administrator command",
            disconnected=True,
        )
        yield  # pragma: no cover


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store("us-east", f"sqlite:///{tmp_path}/us-east.db")
    opened.create_schema()
    yield opened
    opened.dispose()


def test_a_key_is_kept_on_a_fresh_connection_after_one_is_killed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = _KilledOnce(store)
    monkeypatch.setattr(store, "transaction", killed.transaction)

    kept = order_requests.keep(store, "k-1", "sha", started=False)

    assert killed.killed
    assert (kept.order_id, kept.started) == ("k-1", False)
    found = order_requests.find([store], "k-1")
    assert found is not None
    assert found[1].request_sha256 == "sha"


def test_a_store_that_stays_down_still_answers_unavailable(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dead() -> AbstractContextManager[Session]:
        return _KilledOnce(store)._dead()

    monkeypatch.setattr(store, "transaction", dead)

    with pytest.raises(StoreUnavailable):
        order_requests.keep(store, "k-2", "sha", started=True)
