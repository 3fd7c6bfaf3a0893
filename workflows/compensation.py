"""A durable, ordered, cancellation-safe compensation stack for workflows.

Register an undo *before* its step runs, so a step that timed out after taking effect is still
undone; `unwind` then runs the undos newest first. Steps that ran in parallel are registered as
one group and undone in parallel. Unwinding is shielded: cancelling the workflow while it runs
does not stop it. Durability comes from Temporal: the stack lives in workflow state, rebuilt by
replay, and each undo is an activity retried by the workflow until it succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Undo = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Compensation:
    name: str
    undo: Undo


class CompensationError(Exception):
    """Some undos failed; each failure is in `failures`, the first is also the `__cause__`."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        self.failures = tuple(failures)
        names = ", ".join(name for name, _ in self.failures)
        super().__init__(f"{len(self.failures)} compensation(s) failed: {names}")


class CompensationStack:
    def __init__(self) -> None:
        self._groups: list[list[Compensation]] = []

    def push(self, name: str, undo: Undo) -> None:
        self._groups.append([Compensation(name, undo)])

    def push_group(self, compensations: Sequence[Compensation]) -> None:
        """Registers undos for steps that run in parallel; they are undone in parallel too."""
        if compensations:
            self._groups.append(list(compensations))

    @property
    def pending(self) -> list[str]:
        """Names of the registered undos, in the order `unwind` will start them."""
        return [entry.name for group in reversed(self._groups) for entry in group]

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups)

    async def unwind(self) -> None:
        """Runs every registered undo, newest group first, and empties the stack.

        A failing undo does not stop the others; once all have run, CompensationError lists
        what failed. Cancellation of the caller is absorbed until every undo has finished.
        """
        failures: list[tuple[str, BaseException]] = []
        while self._groups:
            group = self._groups.pop()
            results = await shielded(
                asyncio.gather(*(entry.undo() for entry in group), return_exceptions=True)
            )
            failures.extend(
                (entry.name, result)
                for entry, result in zip(group, results, strict=True)
                if isinstance(result, BaseException)
            )
        if failures:
            raise CompensationError(failures) from failures[0][1]


async def shielded(awaitable: Awaitable[T]) -> T:
    """Awaits `awaitable` to its end even if the caller is cancelled meanwhile.

    The caller's cancellation is absorbed: code past the point of no return (compensating, or
    finishing after the pivot) must complete. Only cancelling the awaited work itself raises.
    """
    future = asyncio.ensure_future(awaitable)
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                raise
