"""Stores keep money as integer minor units: exact on every database, no float rounding."""

from decimal import Decimal, InvalidOperation

_CENT = Decimal("0.01")


def to_minor(amount: Decimal) -> int:
    """Cents of an amount; refuses what is not a whole number of cents."""
    try:
        if not amount.is_finite():
            raise InvalidOperation
        cents = amount.quantize(_CENT)
    except InvalidOperation:
        raise ValueError(f"{amount} is not an amount of money") from None
    if cents != amount:
        raise ValueError(f"{amount} has more precision than the currency allows")
    return int(cents.scaleb(2))


def from_minor(minor: int) -> Decimal:
    return Decimal(minor).scaleb(-2).quantize(_CENT)
