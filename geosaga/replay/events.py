"""One-line descriptions of history events, for replay reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.contrib.pydantic import pydantic_data_converter


def describe_event(
    events: Sequence[HistoryEvent],
    event_id: int,
    decrypt: Callable[[Payload], Payload] | None = None,
) -> str | None:
    """`event 13 ActivityTaskScheduled reserve_stock "reserve 2 × SKU-1 in us-east"`.

    `decrypt` opens an encrypted summary (the payload codec's); without it one is left out.
    """
    event = next((e for e in events if e.event_id == event_id), None)
    if event is None:
        return None
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    words = [f"event {event_id}", "".join(word.title() for word in kind.split("_"))]
    return " ".join([*words, *_details(event, decrypt)])


def only_scheduled(events: Sequence[HistoryEvent], activity_type: str) -> int | None:
    """The id of the one ActivityTaskScheduled event of this type; None unless exactly one."""
    ids = [
        event.event_id
        for event in events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    ]
    return ids[0] if len(ids) == 1 else None


def _details(event: HistoryEvent, decrypt: Callable[[Payload], Payload] | None) -> list[str]:
    details: list[str] = []
    if event.HasField("activity_task_scheduled_event_attributes"):
        details.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    elif event.HasField("timer_started_event_attributes"):
        details.append(f"timer {event.timer_started_event_attributes.timer_id}")
    elif event.HasField("upsert_workflow_search_attributes_event_attributes"):
        upserted = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        details.append(", ".join(sorted(upserted.indexed_fields)))
    elif event.HasField("marker_recorded_event_attributes"):
        details.append(f"marker {event.marker_recorded_event_attributes.marker_name}")
    if event.user_metadata.HasField("summary"):
        try:
            payload = event.user_metadata.summary
            summary = pydantic_data_converter.payload_converter.from_payload(
                decrypt(payload) if decrypt is not None else payload, str
            )
        except Exception:  # a summary only helps the reader; an odd one is left out
            return details
        details.append(json.dumps(summary, ensure_ascii=False))
    return details
