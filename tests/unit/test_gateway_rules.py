"""The gateway's pure rules: sandbox tokens, amounts in minor units, and fault draws."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from foundation.settings import GatewayFaults
from gateway import tokens
from gateway.faults import Faults
from gateway.money import from_minor, to_minor

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2)
attempts = st.integers(min_value=1, max_value=50)


@given(amounts)
def test_an_amount_survives_minor_units(amount: Decimal) -> None:
    assert from_minor(to_minor(amount)) == amount
    assert str(from_minor(to_minor(amount))) == f"{amount:.2f}"


@given(attempts)
def test_a_flaky_card_fails_its_first_two_attempts_only(attempt: int) -> None:
    decision = tokens.decide(tokens.FLAKY, attempt)

    assert decision.unavailable == (attempt <= tokens.FLAKY_FAILURES)
    if not decision.unavailable:
        assert decision.status == "authorised"


@given(st.text(min_size=1, max_size=64), attempts)
def test_only_the_sandbox_cards_authorise(token: str, attempt: int) -> None:
    decision = tokens.decide(token, attempt)

    if token in (tokens.OK, tokens.VOID_FAIL) or (
        token == tokens.FLAKY and attempt > tokens.FLAKY_FAILURES
    ):
        assert decision.status == "authorised"
    elif token != tokens.FLAKY:
        assert decision.status == "declined"
        assert decision.reason == (
            "card declined" if token == tokens.DECLINE else "unknown sandbox token"
        )
    assert tokens.voidable(token) == (token != tokens.VOID_FAIL)


@given(
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=0, max_value=2**32),
)
def test_seeded_draws_replay(error_rate: float, lost_rate: float, seed: int) -> None:
    spec = GatewayFaults(error_rate=error_rate, lost_reply_rate=lost_rate, seed=seed)
    first, second = Faults(spec), Faults(GatewayFaults())
    second.set(spec)

    assert [first.draw() for _ in range(20)] == [second.draw() for _ in range(20)]


@given(st.integers(min_value=0, max_value=2**32))
def test_rates_of_zero_and_one_are_never_and_always(seed: int) -> None:
    always = Faults(GatewayFaults(hang_rate=1, hang_seconds=3, error_rate=1, seed=seed))
    never = Faults(GatewayFaults(latency_rate=0, lost_reply_rate=0, seed=seed))
    drawn, spared = always.draw(), never.draw()

    assert (drawn.error, drawn.hang_seconds, drawn.lost_reply) == (True, 3, False)
    assert (spared.error, spared.lost_reply, spared.hang_seconds) == (False, False, 0.0)
    assert spared.latency_seconds == 0.0
