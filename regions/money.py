"""Stores keep money as integer minor units: exact on every database, no float rounding."""

from decimal import Decimal

_MINOR_PER_UNIT = 100


def to_minor(amount: Decimal) -> int:
    minor = amount * _MINOR_PER_UNIT
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more precision than the currency allows")
    return int(minor)


def from_minor(minor: int) -> Decimal:
    return (Decimal(minor) / _MINOR_PER_UNIT).quantize(Decimal("0.01"))
