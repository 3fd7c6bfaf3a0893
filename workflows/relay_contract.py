"""The relay workflow's contract: one relay per (source, destination) region pair."""

from __future__ import annotations

from pydantic import BaseModel

RELAY_WORKFLOW = "Relay"


class RelayInput(BaseModel):
    source: str
    destination: str
    source_queue: str
    destination_queue: str
    batch_size: int = 100
    poll_seconds: float = 10.0
    linger_seconds: float = 0.5
    settle_seconds: float = 0.0
    # The last outbox id delivered; None on a relay's first run (it asks the destination).
    after_id: int | None = None


def relay_id(relay: RelayInput) -> str:
    """Named by task queues, so separate deployments (or test runs) never share a relay."""
    return f"relay:{relay.source_queue}->{relay.destination_queue}"
