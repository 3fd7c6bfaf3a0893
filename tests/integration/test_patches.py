"""Changes to the released saga and relay sit behind `workflow.patched`: histories recorded before a
change still replay after it, and the guard is what keeps them replaying."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio import workflow

from geosaga.replay import Source, history_files, read_history, replay
from workflows.order_saga import PATCH_AUTHORISE_ALONGSIDE, PATCH_RECORD_OUTCOME, OrderSaga
from workflows.relay import PATCH_RUN_AT_DESTINATION, Relay

# Recorded before the patches below existed.
BEFORE = Path(__file__).resolve().parents[1] / "histories" / "v1"


def sources() -> list[Source]:
    files = history_files([BEFORE])
    assert files, f"no histories in {BEFORE}"
    return [read_history(path) for path in files]


async def test_histories_from_before_the_patches_replay() -> None:
    outcomes = await replay(sources(), [OrderSaga])

    assert [o.problem for o in outcomes if not o.ok] == []


@pytest.mark.parametrize("patch", [PATCH_RECORD_OUTCOME, PATCH_AUTHORISE_ALONGSIDE])
async def test_without_its_guard_a_change_breaks_older_histories(
    patch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original: Callable[[str], bool] = workflow.patched
    # As if the change had been made without `workflow.patched`: new code on every path.
    monkeypatch.setattr(
        workflow, "patched", lambda patch_id: patch_id == patch or original(patch_id)
    )

    outcomes = await replay(sources(), [OrderSaga])

    assert outcomes
    assert all(o.problem is not None and o.problem.kind == "nondeterminism" for o in outcomes), [
        (o.origin, o.problem) for o in outcomes
    ]


# Relays recorded on the shared workflow queue, applying with an activity on the destination's,
# before they moved to the destination's queue (workflows/relay.py).
RELAYS_BEFORE = Path(__file__).resolve().parents[1] / "relay-histories" / "v1"


def relay_sources() -> list[Source]:
    files = history_files([RELAYS_BEFORE])
    assert files, f"no histories in {RELAYS_BEFORE}"
    return [read_history(path) for path in files]


async def test_relay_histories_from_before_the_move_replay() -> None:
    outcomes = await replay(relay_sources(), [Relay])

    assert outcomes
    assert [o.problem for o in outcomes if not o.ok] == []


async def test_without_its_guard_the_move_breaks_older_relay_histories(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original: Callable[[str], bool] = workflow.patched
    monkeypatch.setattr(
        workflow,
        "patched",
        lambda patch_id: patch_id == PATCH_RUN_AT_DESTINATION or original(patch_id),
    )

    outcomes = await replay(relay_sources(), [Relay])

    assert outcomes
    assert all(o.problem is not None and o.problem.kind == "nondeterminism" for o in outcomes), [
        (o.origin, o.problem) for o in outcomes
    ]
