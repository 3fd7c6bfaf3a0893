"""Human-readable text for the Web UI: activity summaries and the saga's current details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from workflows.contract import OrderInput, SagaState, StepRecord


class _Line(Protocol):
    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...


def describe_lines(lines: Sequence[_Line]) -> str:
    """'2 × SKU-7, 1 × SKU-1'"""
    return ", ".join(f"{line.quantity} × {line.sku}" for line in lines)


def saga_summary(order: OrderInput) -> str:
    """'order 7f3a: 3 lines, 129.90 USD, home eu-west' — the saga's one line in the Web UI."""
    lines = f"{len(order.lines)} line{'' if len(order.lines) == 1 else 's'}"
    return (
        f"order {order.order_id}: {lines}, {order.total} {order.currency}, home {order.home_region}"
    )


def step_table(state: SagaState) -> str:
    """The saga's step table as Markdown, shown as the workflow's current details."""
    head = f"**{state.status}** · stage {state.stage}"
    if state.reason:
        head += f" · reason {state.reason}"
    rows = [
        head,
        "",
        "| step | region | status | attempts | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows += [_row(step) for step in state.steps]
    rows += [_row(step, prefix="compensate: ") for step in state.compensations]
    if state.message:
        rows += ["", state.message]
    return "\n".join(rows)


def _row(step: StepRecord, prefix: str = "") -> str:
    detail = step.detail + (f" — {step.error}" if step.error else "")
    return f"| {prefix}{step.name} | {step.region} | {step.status} | {step.attempts} | {detail} |"
