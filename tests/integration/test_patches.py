"""Changes to the released saga and relay sit behind `workflow.patched`: histories recorded
before a change still replay after it, and the guard is what keeps them replaying."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio import workflow

from geosaga.replay import Source, history_files, read_history, replay
from workflows.order_saga import PATCH_AUTHORISE_ALONGSIDE, PATCH_RECORD_OUTCOME, OrderSaga
from workflows.relay import PATCH_RUN_AT_DESTINATION, PATCH_SWEEP_WHEN_QUIET, Relay

TESTS = Path(__file__).resolve().parents[1]
# Sagas recorded before the saga's patches existed; relays recorded on the shared workflow
# queue, applying with an activity on the destination's, before they moved there (v1) and
# before they swept when their source went quiet, with empty reads (v2). Relays at their
# destination cannot be replayed here: the replayer runs on a task queue of its own.
RECORDED = {
    "saga": (TESTS / "histories" / "v1", OrderSaga),
    "relay": (TESTS / "relay-histories" / "v1", Relay),
    "quiet relay": (TESTS / "relay-histories" / "v2", Relay),
}
PATCHES = [
    ("saga", PATCH_RECORD_OUTCOME),
    ("saga", PATCH_AUTHORISE_ALONGSIDE),
    ("relay", PATCH_RUN_AT_DESTINATION),
    ("quiet relay", PATCH_SWEEP_WHEN_QUIET),
]


def sources(folder: Path) -> list[Source]:
    files = history_files([folder])
    assert files, f"no histories in {folder}"
    return [read_history(path) for path in files]


@pytest.mark.parametrize("kind", sorted(RECORDED))
async def test_histories_from_before_the_patches_replay(kind: str) -> None:
    folder, defn = RECORDED[kind]

    outcomes = await replay(sources(folder), [defn])

    assert outcomes
    assert [o.problem for o in outcomes if not o.ok] == []


@pytest.mark.parametrize(("kind", "patch"), PATCHES)
async def test_without_its_guard_a_change_breaks_older_histories(
    kind: str, patch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, defn = RECORDED[kind]
    original: Callable[[str], bool] = workflow.patched
    # As if the change had been made without `workflow.patched`: new code on every path.
    monkeypatch.setattr(
        workflow, "patched", lambda patch_id: patch_id == patch or original(patch_id)
    )

    outcomes = await replay(sources(folder), [defn])

    assert outcomes
    assert all(o.problem is not None and o.problem.kind == "nondeterminism" for o in outcomes), [
        (o.origin, o.problem) for o in outcomes
    ]
