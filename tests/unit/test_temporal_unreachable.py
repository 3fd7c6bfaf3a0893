"""What counts as "Temporal is unreachable" (a 503) rather than "Temporal answered an error"."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from foundation.temporal import temporal_unreachable


@pytest.mark.parametrize(
    ("status", "message", "unreachable"),
    [
        (RPCStatusCode.UNAVAILABLE, "connection refused", True),
        (RPCStatusCode.DEADLINE_EXCEEDED, "deadline exceeded", True),
        # A call in flight when the server was killed (found by `geosaga torture`, seed 3 on
        # SQLite: it answered 502 during the outage).
        (RPCStatusCode.UNKNOWN, "transport error", True),
        (RPCStatusCode.INVALID_ARGUMENT, "bad request", False),
        (RPCStatusCode.NOT_FOUND, "workflow not found", False),
    ],
)
def test_an_rpc_error_is_an_outage_only_when_the_server_cannot_be_reached(
    status: RPCStatusCode, message: str, unreachable: bool
) -> None:
    assert temporal_unreachable(RPCError(message, status, b"")) is unreachable
