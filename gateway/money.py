"""Amounts: decimal strings with at most two places on the wire, minor units in the store."""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")


def to_minor(amount: Decimal) -> int:
    return int(amount.quantize(CENT) * 100)


def from_minor(minor: int) -> Decimal:
    return Decimal(minor).scaleb(-2).quantize(CENT)
