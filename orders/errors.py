"""What the orders client refuses with. The API maps each to its HTTP answer (api/errors.py),
the CLI to one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class OrderNotFound(Exception):
    pass


class IdempotencyConflict(Exception):
    """The key was used before with a different body."""


class EmptyCart(Exception):
    pass


class Refused(Exception):
    """The saga (or Temporal) declined the request; the message says why."""


class NotAnswered(Exception):
    """The saga did not answer in time: no worker took its workflow task (all down, cut off
    or busy). The request is kept by Temporal and may still take effect."""


class InvalidRequest(Exception):
    """Checks pydantic cannot make alone failed; each problem names its field."""

    def __init__(self, problems: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(problem["msg"]) for problem in problems))
        self.problems = list(problems)


def invalid(field: Sequence[Any], message: str) -> dict[str, Any]:
    """One problem in FastAPI's validation-error shape: where (`("body", "lines", 0, "sku")`)
    and what."""
    return {"loc": tuple(field), "msg": message, "type": "value_error"}
