"""Writing events to a region's outbox inside the caller's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from regions.models import OutboxEvent


def record_event(
    session: Session,
    *,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str,
    payload: Mapping[str, Any],
) -> OutboxEvent:
    event = OutboxEvent(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        payload=json.dumps(payload, sort_keys=True, default=str),
    )
    session.add(event)
    return event
