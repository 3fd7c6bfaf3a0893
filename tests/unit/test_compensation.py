"""CompensationStack and shielded on plain asyncio: order, groups, failures, cancellation."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.compensation import (
    Compensation,
    CompensationError,
    CompensationStack,
    Undo,
    shielded,
)


class Boom(Exception):
    pass


def recorder(log: list[str], name: str, fail: bool = False) -> Undo:
    async def undo() -> None:
        log.append(f"start {name}")
        await asyncio.sleep(0)
        log.append(f"end {name}")
        if fail:
            raise Boom(name)

    return undo


def register(stack: CompensationStack, groups: list[list[str]], log: list[str]) -> None:
    for group in groups:
        if len(group) == 1:
            stack.push(group[0], recorder(log, group[0]))
        else:
            stack.push_group([Compensation(name, recorder(log, name)) for name in group])


async def test_undos_run_newest_first() -> None:
    stack = CompensationStack()
    log: list[str] = []
    register(stack, [["a"], ["b"], ["c"]], log)

    await stack.unwind()

    assert log == ["start c", "end c", "start b", "end b", "start a", "end a"]


async def test_group_members_run_concurrently() -> None:
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    saw_other_running: dict[str, bool] = {}

    def undo(name: str, other: str) -> Undo:
        async def run() -> None:
            started[name].set()
            await asyncio.sleep(0)
            saw_other_running[name] = started[other].is_set()

        return run

    stack = CompensationStack()
    stack.push_group([Compensation("a", undo("a", "b")), Compensation("b", undo("b", "a"))])
    await stack.unwind()

    assert saw_other_running == {"a": True, "b": True}


async def test_a_group_finishes_before_the_older_group_starts() -> None:
    stack = CompensationStack()
    log: list[str] = []
    register(stack, [["old"], ["x", "y"]], log)

    await stack.unwind()

    assert log == ["start x", "start y", "end x", "end y", "start old", "end old"]


async def test_failing_undos_do_not_stop_the_others() -> None:
    stack = CompensationStack()
    log: list[str] = []
    stack.push("a", recorder(log, "a"))
    stack.push("b", recorder(log, "b", fail=True))
    stack.push_group(
        [Compensation("c", recorder(log, "c", fail=True)), Compensation("d", recorder(log, "d"))]
    )

    with pytest.raises(CompensationError, match=r"2 compensation\(s\) failed: c, b") as raised:
        await stack.unwind()

    assert sorted(line for line in log if line.startswith("end")) == [
        "end a",
        "end b",
        "end c",
        "end d",
    ]
    failures = raised.value.failures
    assert [(name, str(error)) for name, error in failures] == [("c", "c"), ("b", "b")]
    assert all(isinstance(error, Boom) for _, error in failures)
    assert raised.value.__cause__ is failures[0][1]


def test_pending_lists_names_in_the_order_unwind_starts_them() -> None:
    stack = CompensationStack()
    register(stack, [["a"], ["b", "c"], ["d"]], [])
    stack.push_group([])

    assert stack.pending == ["d", "b", "c", "a"]
    assert len(stack) == 4


async def test_stack_is_empty_after_unwind_even_when_undos_fail() -> None:
    stack = CompensationStack()
    log: list[str] = []
    stack.push("a", recorder(log, "a", fail=True))
    register(stack, [["b", "c"]], log)

    with pytest.raises(CompensationError):
        await stack.unwind()
    log.clear()
    await stack.unwind()

    assert stack.pending == []
    assert len(stack) == 0
    assert log == []


async def test_cancelling_the_caller_does_not_stop_the_undos() -> None:
    started = {"new": asyncio.Event(), "old": asyncio.Event()}
    release = {"new": asyncio.Event(), "old": asyncio.Event()}
    finished: list[str] = []

    def undo(name: str) -> Undo:
        async def run() -> None:
            started[name].set()
            await release[name].wait()
            finished.append(name)

        return run

    stack = CompensationStack()
    stack.push("old", undo("old"))
    stack.push("new", undo("new"))
    task = asyncio.create_task(stack.unwind())

    await started["new"].wait()
    task.cancel()
    release["new"].set()
    await started["old"].wait()
    task.cancel()
    release["old"].set()
    await task

    assert not task.cancelled()
    assert finished == ["new", "old"]
    assert len(stack) == 0


async def test_shielded_returns_the_result() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert await shielded(work()) == 7


async def test_shielded_absorbs_the_callers_cancellation() -> None:
    inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(shielded(inner))
    await asyncio.sleep(0)

    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()
    inner.set_result(7)

    assert await task == 7


async def test_cancelling_the_awaited_work_raises() -> None:
    inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(shielded(inner))
    await asyncio.sleep(0)

    inner.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


# A group is a list of "fails?" flags; undo i of group g is named u<g>.<i>.
groups_of_flags = st.lists(st.lists(st.booleans(), min_size=1, max_size=3), max_size=6)


@given(groups_of_flags)
async def test_unwind_runs_groups_in_reverse_and_reports_every_failure(
    flags: list[list[bool]],
) -> None:
    stack = CompensationStack()
    log: list[str] = []
    names: list[list[str]] = []
    failing: set[str] = set()
    for g, group in enumerate(flags):
        entries = [(f"u{g}.{i}", fail) for i, fail in enumerate(group)]
        names.append([name for name, _ in entries])
        failing |= {name for name, fail in entries if fail}
        if len(entries) == 1:
            stack.push(entries[0][0], recorder(log, *entries[0]))
        else:
            stack.push_group([Compensation(n, recorder(log, n, fail)) for n, fail in entries])
    expected_order = [name for group in reversed(names) for name in group]
    assert stack.pending == expected_order

    if failing:
        with pytest.raises(CompensationError) as raised:
            await stack.unwind()
        failures = raised.value.failures
        assert [name for name, _ in failures] == [n for n in expected_order if n in failing]
        assert raised.value.__cause__ is failures[0][1]
    else:
        await stack.unwind()

    assert log == [
        f"{event} {name}"
        for group in reversed(names)
        for event in ("start", "end")
        for name in group
    ]
    assert len(stack) == 0
