"""The sandbox tokens: each card behaves one way, so anyone can try every payment path."""

from __future__ import annotations

from dataclasses import dataclass

OK = "tok_ok"
DECLINE = "tok_decline"
FLAKY = "tok_flaky"
VOID_FAIL = "tok_void_fail"
# tok_flaky's first attempts under a reference that answer 503.
FLAKY_FAILURES = 2


@dataclass(frozen=True)
class Decision:
    """An authorisation's fate by token: `unavailable` is a transient 503 (nothing kept)."""

    status: str
    reason: str | None = None
    unavailable: bool = False


def decide(token: str, attempt: int) -> Decision:
    """What authorising with `token` does on the `attempt`-th try under its reference."""
    if token == FLAKY and attempt <= FLAKY_FAILURES:
        return Decision(
            "unavailable",
            f"{FLAKY} fails transiently (attempt {attempt} of {FLAKY_FAILURES + 1})",
            unavailable=True,
        )
    if token in (OK, FLAKY, VOID_FAIL):
        return Decision("authorised")
    if token == DECLINE:
        return Decision("declined", "card declined")
    return Decision("declined", "unknown sandbox token")


def voidable(token: str) -> bool:
    """Whether a hold on this card can be voided through the API (tok_void_fail's cannot: only
    the console releases it)."""
    return token != VOID_FAIL
