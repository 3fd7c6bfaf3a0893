"""How a relay's read cuts batches (activities/replication.py): a busy region's events wait
for the linger, so they travel in few batches; a quiet region's go as soon as it settles."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.testing import ActivityEnvironment

from activities.contract import OutboxBatch, ReadOutbox
from activities.replication import ReplicationActivities
from regions import carts
from regions.store import Store

# Far longer than any test may take: a batch that ships came from the settle rule.
_HOUR = 3600.0


@pytest.fixture
def store(eu_west_store: Store) -> Store:
    return eu_west_store


def _read(store: Store, settle: float) -> OutboxBatch:
    request = ReadOutbox(
        after_id=0, limit=100, wait_seconds=_HOUR, linger_seconds=_HOUR, settle_seconds=settle
    )
    activities = ReplicationActivities(store, max_attempts=3)
    with ThreadPoolExecutor(1) as pool:
        # A broken settle rule would hold the batch for the hour: fail instead of hanging.
        return pool.submit(ActivityEnvironment().run, activities.read_outbox, request).result(60)


def test_a_quiet_region_ships_without_waiting_out_the_linger(store: Store) -> None:
    carts.set_quantity(store, "ada", "SKU-1", 2, window_ms=0)

    batch = _read(store, settle=0.2)

    assert [event.event_type for event in batch.events] == ["CartChanged"]


def test_a_busy_region_keeps_batching_until_it_goes_quiet(store: Store) -> None:
    writes = 12
    first = threading.Event()

    def keep_writing() -> None:
        for n in range(writes):
            carts.set_quantity(store, "ada", f"SKU-{n % 8 + 1}", n + 1, window_ms=0)
            first.set()
            time.sleep(0.02)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    first.wait()
    batch = _read(store, settle=1.0)
    writer.join()

    # Gaps of ~20 ms never reach the 1 s settle: the read held its batch until the writes ended.
    assert len(batch.events) == writes
