"""Event schemas: declared, exported, and readable across versions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from regions.events import EVENTS, Envelope, OrderEnded, UnknownEvent, json_schemas

EXPORTED = Path(__file__).resolve().parents[2] / "docs" / "event-schemas.json"


def envelope(event_type: str, version: int, payload: dict[str, Any]) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        schema_version=version,
        aggregate_type="order",
        aggregate_id="o-1",
        sequence=1,
        source_region="eu-west",
        hlc="000001700000000000.0000000000.eu-west",
        payload=payload,
        outbox_id=1,
        created_at=datetime.now(UTC),
    )


def test_an_older_version_still_reads_after_a_field_was_added() -> None:
    # OrderEnded version 1, before `regions` existed.
    v1 = {
        "region": "eu-west",
        "order_id": "o-1",
        "customer_id": "c-1",
        "status": "completed",
        "total": "48.00",
        "currency": "USD",
        "allocations": [
            {"region": "eu-west", "sku": "SKU-2", "quantity": 1},
            {"region": "us-east", "sku": "SKU-2", "quantity": 1},
        ],
    }

    event = envelope("OrderEnded", 1, v1).read()

    assert isinstance(event, OrderEnded)
    assert event.regions == ["eu-west", "us-east"]
    assert event.total == Decimal("48.00")


def test_a_field_unknown_to_this_code_is_ignored() -> None:
    newer = {"region": "eu-west", "order_id": "o-1", "loyalty_points": 12}

    event = envelope("PaymentVoided", 1, newer).read()

    assert event.model_dump() == {"region": "eu-west", "order_id": "o-1"}


@pytest.mark.parametrize(
    ("event_type", "version", "message"),
    [("OrderShipped", 1, "no schema"), ("OrderEnded", 3, "newer than this code")],
)
def test_unknown_types_and_future_versions_are_refused(
    event_type: str, version: int, message: str
) -> None:
    with pytest.raises(UnknownEvent, match=message):
        envelope(event_type, version, {}).read()


def test_every_event_type_is_exported_as_json_schema() -> None:
    exported = json.loads(EXPORTED.read_text())

    stale = "stale: run `geosaga event-schemas --out docs/event-schemas.json`"
    assert exported == json.loads(json.dumps(json_schemas())), stale
    assert set(exported) == set(EVENTS)
    assert exported["OrderEnded"]["version"] == 2
    assert "regions" in exported["OrderEnded"]["schema"]["properties"]
