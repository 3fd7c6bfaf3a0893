"""Changes to the released saga and relay sit behind `workflow.patched`: histories recorded
before a change still replay after it, and the guard is what keeps them replaying."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from foundation.settings import Settings
from geosaga.replay import Source, history_files, read_history, replay
from regions.store import Store
from regions.values import SagaStatus
from tests.cluster import Cluster
from tests.helpers import new_key, order, outcome, stock, stuck_release, submit, until
from workflows.allocation import PATCH_STOCK_VIEW
from workflows.compensation_rounds import PATCH_OPERATOR_ACTIONS, PATCH_RESOLVE_HOLDS_ONLY
from workflows.contract import StepStatus, workflow_id
from workflows.order_saga import (
    PATCH_AUTHORISE_ALONGSIDE,
    PATCH_CANCEL_WINS,
    PATCH_RECORD_OUTCOME,
    OrderSaga,
)
from workflows.relay import PATCH_RUN_AT_DESTINATION, PATCH_SWEEP_WHEN_QUIET, Relay

TESTS = Path(__file__).resolve().parents[1]
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def sources(folder: Path) -> list[Source]:
    files = history_files([folder])
    assert files, f"no histories in {folder}"
    return [read_history(path) for path in files]


def the_view_knew() -> list[Source]:
    """v2's split order (home eu-west short of SKU-2) as it went where eu-west's replicated view
    already held ap-south's empty stock: activities answer with the view before the saga's
    code plans by it, so sagas begun before the change met such answers."""
    [source] = [s for s in sources(TESTS / "histories" / "v2") if s.origin.endswith("split.json")]
    assert source.history is not None
    for event in source.history.events:
        if event.HasField("activity_task_completed_event_attributes"):
            [payload] = event.activity_task_completed_event_attributes.result.payloads
            result = json.loads(payload.data)
            if result.get("region") == "eu-west" and "available" in result:
                result["elsewhere"] = {"ap-south": {"SKU-2": 0}}
                payload.data = json.dumps(result).encode()
    return [source]


# Sagas recorded before the saga's patches existed; relays recorded on the shared workflow
# queue, applying with an activity on the destination's, before they moved there (v1) and
# before they swept when their source went quiet, with empty reads (v2). Relays at their
# destination cannot be replayed here: the replayer runs on a task queue of its own.
RECORDED: dict[str, tuple[Callable[[], list[Source]], type]] = {
    "saga": (lambda: sources(TESTS / "histories" / "v1"), OrderSaga),
    "saga, the view known": (the_view_knew, OrderSaga),
    "relay": (lambda: sources(TESTS / "relay-histories" / "v1"), Relay),
    "quiet relay": (lambda: sources(TESTS / "relay-histories" / "v2"), Relay),
}
PATCHES = [
    ("saga", PATCH_RECORD_OUTCOME),
    ("saga", PATCH_AUTHORISE_ALONGSIDE),
    ("saga, the view known", PATCH_STOCK_VIEW),
    ("relay", PATCH_RUN_AT_DESTINATION),
    ("quiet relay", PATCH_SWEEP_WHEN_QUIET),
]


def without_guard(monkeypatch: pytest.MonkeyPatch, patch: str) -> None:
    """As if the change had been made without `workflow.patched`: new code on every path."""
    original: Callable[[str], bool] = workflow.patched
    monkeypatch.setattr(
        workflow, "patched", lambda patch_id: patch_id == patch or original(patch_id)
    )


def before(monkeypatch: pytest.MonkeyPatch, patch: str) -> None:
    """As the code ran before the change: the old path, and no marker in the history."""
    original: Callable[[str], bool] = workflow.patched
    monkeypatch.setattr(
        workflow, "patched", lambda patch_id: patch_id != patch and original(patch_id)
    )


@pytest.mark.parametrize("kind", sorted(RECORDED))
async def test_histories_from_before_the_patches_replay(kind: str) -> None:
    recorded, defn = RECORDED[kind]

    outcomes = await replay(recorded(), [defn])

    assert outcomes
    assert [o.problem for o in outcomes if not o.ok] == []


@pytest.mark.parametrize(("kind", "patch"), PATCHES)
async def test_without_its_guard_a_change_breaks_older_histories(
    kind: str, patch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded, defn = RECORDED[kind]
    without_guard(monkeypatch, patch)

    outcomes = await replay(recorded(), [defn])

    assert outcomes
    assert all(o.problem is not None and o.problem.kind == "nondeterminism" for o in outcomes), [
        (o.origin, o.problem) for o in outcomes
    ]


# Patches whose path no recorded history takes: a saga on the code from before the change,
# run here.


@pytest_asyncio.fixture
async def cluster(
    client: Client, settings: Settings, stores: dict[str, Store]
) -> AsyncIterator[Cluster]:
    """Keeps no workflow in its cache: every workflow task replays the whole history on the
    code in place then, as a worker does after a deploy."""
    async with Cluster(client, settings, stores, max_cached_workflows=0) as running:
        yield running


@sqlite_only
@pytest.mark.parametrize(("guarded", "answer"), [(True, 409), (False, 202)])
async def test_a_compensation_begun_before_operator_actions_does_not_answer_them(
    api: httpx.AsyncClient,
    client: Client,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    guarded: bool,
    answer: int,
) -> None:
    """The change issues no other command for a saga no operator touched, so no recorded
    history tells; what the guard keeps is that such a saga goes on as it began."""
    before(monkeypatch, PATCH_OPERATOR_ACTIONS)
    stuck = order("us-east", [("SKU-4", 2)], "tok_void_fail", f"c-{new_key()}")
    order_id = await submit(api, stuck)
    await until(client, order_id, lambda s: s.status == SagaStatus.NEEDS_ATTENTION)
    monkeypatch.undo()
    if not guarded:
        without_guard(monkeypatch, PATCH_OPERATOR_ACTIONS)

    retried = await api.post(f"/orders/{order_id}/compensations/retry")

    assert retried.status_code == answer, retried.text


@sqlite_only
async def test_without_its_guard_resolving_holds_only_breaks_an_older_resolve(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the change an operator could resolve a stuck stock release; that saga's history
    replays only while the guard keeps it on the path it took."""
    before(monkeypatch, PATCH_RESOLVE_HOLDS_ONLY)
    _, order_id = await stuck_release(api, client, stores, cluster)
    resolved = await api.post(
        f"/orders/{order_id}/resolve", json={"resolved_by": "ops", "note": "released by hand"}
    )
    saga = await outcome(client, order_id)
    monkeypatch.undo()
    history = await client.get_workflow_handle(workflow_id(order_id)).fetch_history()
    recorded = [Source("resolved release", history)]

    guarded = await replay(recorded, [OrderSaga])
    without_guard(monkeypatch, PATCH_RESOLVE_HOLDS_ONLY)
    unguarded = await replay(recorded, [OrderSaga])

    assert resolved.status_code == 202, resolved.text
    assert ("release", "ap-south", StepStatus.RESOLVED) in [
        (c.name, c.region, c.status) for c in saga.compensations
    ]
    assert [o.problem for o in guarded] == [None]
    assert [o.problem.kind if o.problem else None for o in unguarded] == ["nondeterminism"]


@sqlite_only
async def test_without_its_guard_a_cancel_winning_breaks_an_older_failed_saga(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the change a stock check that timed out as a cancel came in failed the saga
    (tests/integration/test_before_the_pivot.py runs the same race on the current code)."""
    before(monkeypatch, PATCH_CANCEL_WINS)
    stock(stores, {"us-east": {"SKU-1": 5}})
    await cluster.stop("us-east")
    order_id = await submit(api, order("us-east", [("SKU-1", 1)]))
    await until(client, order_id, lambda s: any(step.name == "check_stock" for step in s.steps))
    await cluster.stop_workflows()
    handle = client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))
    # The check times out while no saga runs and the cancel waits at the server: the next
    # workflow task brings both.
    await _until_history_has(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT)
    cancelling = asyncio.ensure_future(api.post(f"/orders/{order_id}/cancel"))
    await asyncio.sleep(2)
    cluster.start_workflows()
    cancelled = await cancelling
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    monkeypatch.undo()
    recorded = [Source("failed as cancelled", await handle.fetch_history())]

    guarded = await replay(recorded, [OrderSaga])
    without_guard(monkeypatch, PATCH_CANCEL_WINS)
    unguarded = await replay(recorded, [OrderSaga])

    assert cancelled.status_code == 202, cancelled.text
    assert [o.problem for o in guarded] == [None]
    assert [o.problem.kind if o.problem else None for o in unguarded] == ["nondeterminism"]


async def _until_history_has(handle: WorkflowHandle[Any, Any], kind: EventType.ValueType) -> None:
    for _ in range(1200):
        async for event in handle.fetch_history_events():
            if event.event_type == kind:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never recorded {EventType.Name(kind)}")
