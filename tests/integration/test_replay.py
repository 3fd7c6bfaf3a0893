"""Replay: the recorded corpus replays on the current code, nondeterminism is caught and
reported, `geosaga replay` works for files and for the server, and sagas end the same when
every workflow task replays the whole history (workflow cache off)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from rich.console import Console
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.client import Client

from foundation.settings import Settings
from geosaga.devserver import DevServer, temporal_cli, wait_for_port
from geosaga.replay import Outcome, history_files, read_history, replay, replay_all
from geosaga.replay.report import report
from regions.store import Store
from regions.values import Allocation, Reason, SagaStatus
from tests.cluster import Cluster
from tests.helpers import assert_invariants, order, place, stock
from tests.integration.impostor_sagas import ShipsBeforeCheckingStock, SkipsTheStatusUpsert
from workflows.contract import SagaState, StepStatus, workflow_id

REPO = Path(__file__).resolve().parents[2]
HISTORIES = REPO / "tests" / "histories"
COMPLETED = HISTORIES / "v1" / "completed.json"
SPLIT = HISTORIES / "v1" / "split.json"
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest_asyncio.fixture
async def cluster(
    client: Client, settings: Settings, stores: dict[str, Store]
) -> AsyncIterator[Cluster]:
    """This module's workflow worker keeps no workflow in its cache: every workflow task
    replays the whole history before it runs new code."""
    async with Cluster(client, settings, stores, max_cached_workflows=0) as running:
        yield running


def rendered(outcomes: list[Outcome]) -> tuple[int, str]:
    """`geosaga replay`'s exit code and output for these outcomes."""
    out = io.StringIO()
    code = report(outcomes, Console(file=out, width=200, color_system=None))
    return code, out.getvalue()


# The corpus -------------------------------------------------------------------------------------


async def test_every_recorded_history_replays_on_the_current_code() -> None:
    assert HISTORIES.is_dir(), f"the replay corpus {HISTORIES} is missing"
    folders = sorted(path for path in HISTORIES.iterdir() if path.is_dir())
    assert folders, f"the replay corpus {HISTORIES} has no folders"
    for folder in folders:
        assert list(folder.glob("*.json")), f"{folder} holds no histories"
    files = history_files([HISTORIES])

    outcomes = await replay_all([HISTORIES])

    code, output = rendered(outcomes)
    assert code == 0, output
    assert [outcome.origin for outcome in outcomes] == [str(path) for path in files]
    assert all(outcome.ok and outcome.events > 0 for outcome in outcomes), output
    assert sum(line.startswith("OK ") for line in output.splitlines()) == len(files)


# Nondeterminism ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("impostor", "mismatch", "event"),
    [
        (
            ShipsBeforeCheckingStock,
            "Activity type of scheduled event 'check_stock' does not match activity type of "
            "activity command 'ship_parcel'",
            "ActivityTaskScheduled check_stock",
        ),
        (
            SkipsTheStatusUpsert,
            "does not handle this event: HistoryEvent(id: 5, UpsertWorkflowSearchAttributes)",
            "event 5 UpsertWorkflowSearchAttributes SagaStatus",
        ),
    ],
)
async def test_a_different_code_path_is_reported_as_nondeterminism(
    impostor: type, mismatch: str, event: str
) -> None:
    source = read_history(COMPLETED)
    assert source.history is not None

    [outcome] = await replay([source], workflows=[impostor])

    assert outcome.problem is not None
    assert outcome.problem.kind == "nondeterminism"
    assert mismatch in outcome.problem.message
    assert outcome.problem.event is not None
    assert event in outcome.problem.event
    assert (outcome.workflow_id, outcome.run_id) == (
        source.history.workflow_id,
        source.history.run_id,
    )
    code, output = rendered([outcome])
    assert code == 1
    for shown in (
        f"FAILED {COMPLETED}",
        "nondeterminism",
        source.history.workflow_id,
        source.history.run_id,
        mismatch,
        event,
        "needs workflow.patched; see README",
    ):
        assert shown in output, output


async def test_the_same_history_replays_on_the_saga_itself() -> None:
    [outcome] = await replay([read_history(COMPLETED)])

    assert outcome.ok, outcome.problem


# The command, files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    out: str


async def geosaga(*args: str, env: dict[str, str] | None = None) -> Run:
    """`python -m geosaga ...` in a subprocess, from the repository root."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "geosaga",
        *args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, re.sub(r"\x1b\[[0-9;]*m", "", out.decode()))


async def test_cli_replays_a_recorded_history() -> None:
    history = read_history(SPLIT).history
    assert history is not None

    run = await geosaga("replay", "--history-file", "tests/histories/v1/split.json")

    assert run.code == 0, run.out
    lines = run.out.splitlines()
    assert lines[0].startswith(f"OK {history.workflow_id} run {history.run_id} "), run.out
    assert lines[0].endswith("tests/histories/v1/split.json")
    assert lines[-1] == "1 history: 1 OK, 0 failed"


def _rename_first_activity(history: dict[str, Any]) -> None:
    for event in history["events"]:
        if "activityTaskScheduledEventAttributes" in event:
            event["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "ship_parcel"
            return


def _other_workflow_type(history: dict[str, Any]) -> None:
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    started["workflowType"]["name"] = "Invoicing"


def _decoded_payloads(history: dict[str, Any]) -> None:
    # What the Web UI's Download writes with "decode event history" on.
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    started["input"]["payloads"] = [{"order_id": "decoded"}]


@pytest.mark.parametrize(
    ("edit", "kind", "shown"),
    [
        (
            _rename_first_activity,
            "nondeterminism",
            [
                "Activity type of scheduled event 'ship_parcel' does not match activity type of "
                "activity command 'check_stock'",
                "ActivityTaskScheduled ship_parcel",
                "workflow.patched",
            ],
        ),
        (_other_workflow_type, "other workflow", ["workflow type Invoicing"]),
        (_decoded_payloads, "unreadable", ["its payloads were decoded"]),
        (None, "unreadable", ["cannot read a history"]),
    ],
    ids=["edited", "other-workflow", "decoded", "corrupted"],
)
async def test_cli_reports_a_history_that_does_not_replay(
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None] | None,
    kind: str,
    shown: list[str],
) -> None:
    bad = tmp_path / "bad.json"
    if edit is None:
        bad.write_text(COMPLETED.read_text()[:700])
    else:
        history = json.loads(COMPLETED.read_text())
        edit(history)
        bad.write_text(json.dumps(history))

    run = await geosaga("replay", "--history-file", str(bad), "--history-file", str(SPLIT))

    assert run.code == 1, run.out
    assert f"FAILED {bad}" in run.out
    assert re.search(rf"^  kind +{kind}$", run.out, re.MULTILINE), run.out
    for text in shown:
        assert text in run.out, run.out
    assert re.search(rf"^OK .*{re.escape(str(SPLIT))}$", run.out, re.MULTILINE), run.out
    assert run.out.splitlines()[-1] == "2 histories: 1 OK, 1 failed"


async def test_cli_replays_every_history_in_a_folder_and_refuses_an_empty_one(
    tmp_path: Path,
) -> None:
    folder = await geosaga("replay", "tests/histories/v1")
    empty = await geosaga("replay", "--history-file", str(tmp_path))
    nothing = await geosaga("replay")

    files = sorted((HISTORIES / "v1").glob("*.json"))
    assert folder.code == 0, folder.out
    assert [line.split()[-1] for line in folder.out.splitlines()[:-1]] == [
        str(path.relative_to(REPO)) for path in files
    ]
    assert (empty.code, "no histories to replay" in empty.out) == (1, True), empty.out
    assert (nothing.code, "nothing to replay" in nothing.out) == (2, True), nothing.out


# The command, the server ------------------------------------------------------------------------


@sqlite_only
async def test_cli_replays_a_saga_by_workflow_id(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
) -> None:
    stock(stores, {"us-east": {"SKU-1": 5}})
    saga = await place(api, client, order("us-east", [("SKU-1", 2)]))
    wid = workflow_id(saga.order_id)
    server = {"GEOSAGA_TEMPORAL_ADDRESS": temporal_server.address}

    found = await geosaga("replay", "--workflow-id", wid, env=server)
    by_order_id = await geosaga("replay", "--workflow-id", saga.order_id, env=server)
    missing = await geosaga("replay", "--workflow-id", "order-never-placed", env=server)

    assert saga.status == SagaStatus.COMPLETED
    assert found.code == 0, found.out
    assert found.out.startswith(f"OK {wid} run "), found.out
    assert f"server {temporal_server.address}" in found.out
    # `retry` and `attention` take order ids: replay takes them too.
    assert by_order_id.code == 0, by_order_id.out
    assert by_order_id.out.startswith(f"OK {wid} run "), by_order_id.out
    assert missing.code == 1, missing.out
    assert "not found" in missing.out
    assert "order-never-placed" in missing.out


@sqlite_only
async def test_cli_replays_histories_saved_by_the_temporal_cli_and_the_web_ui(
    api: httpx.AsyncClient,
    client: Client,
    stores: dict[str, Store],
    temporal_server: DevServer,
    tmp_path: Path,
) -> None:
    stock(stores, {"eu-west": {"SKU-2": 2}, "us-east": {"SKU-2": 5}})
    saga = await place(api, client, order("eu-west", [("SKU-2", 4)], token="tok_decline"))
    wid = workflow_id(saga.order_id)
    run_id = (await client.get_workflow_handle(wid).describe()).run_id
    shown = tmp_path / "temporal-workflow-show.json"
    shown.write_bytes(await _temporal_workflow_show(temporal_server, wid))
    downloaded = tmp_path / "web-ui-download.json"
    downloaded.write_text(await _web_ui_download(temporal_server, wid, run_id))

    run = await geosaga("replay", "--history-file", str(shown), "--history-file", str(downloaded))

    assert saga.reason == Reason.PAYMENT_DECLINED
    assert run.code == 0, run.out
    ok = [line for line in run.out.splitlines() if line.startswith(f"OK {wid} run {run_id} ")]
    assert [line.split()[-1] for line in ok] == [str(shown), str(downloaded)], run.out


async def _temporal_workflow_show(server: DevServer, wid: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        temporal_cli(),
        "workflow",
        "show",
        "--workflow-id",
        wid,
        "--output",
        "json",
        "--address",
        server.address,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out


async def _web_ui_download(server: DevServer, wid: str, run_id: str) -> str:
    """What the Web UI's Download button saves: `{"events": [...]}` of the raw events it pages
    through from its own server, payloads not decoded."""
    await wait_for_port(server.ip, server.ui_port)
    url = f"{server.ui_url}/api/v1/namespaces/{server.namespace}/workflows/{wid}/history"
    events: list[dict[str, Any]] = []
    token = ""
    async with httpx.AsyncClient() as http:
        while True:
            params = {"execution.runId": run_id, **({"nextPageToken": token} if token else {})}
            response = await http.get(url, params=params)
            response.raise_for_status()
            page = response.json()
            events += page["history"]["events"]
            token = page.get("nextPageToken") or ""
            if not token:
                return json.dumps({"events": events}, indent=2)


# Sagas with the workflow cache off --------------------------------------------------------------


@sqlite_only
async def test_sagas_end_as_expected_when_every_workflow_task_replays(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    initial = stock(
        stores,
        {"us-east": {"SKU-1": 10, "SKU-2": 3}, "eu-west": {"SKU-2": 5}, "ap-south": {"SKU-4": 1}},
    )

    completed, declined, split, short = await asyncio.gather(
        place(api, client, order("us-east", [("SKU-1", 2)])),
        place(api, client, order("us-east", [("SKU-1", 1)], token="tok_decline")),
        place(api, client, order("eu-west", [("SKU-2", 7)])),
        place(api, client, order("ap-south", [("SKU-4", 50)])),
    )

    assert completed.status == SagaStatus.COMPLETED
    assert completed.allocations == [Allocation(region="us-east", sku="SKU-1", quantity=2)]
    assert (declined.status, declined.reason) == (SagaStatus.COMPENSATED, Reason.PAYMENT_DECLINED)
    assert declined.compensations
    assert all(c.status == StepStatus.SUCCEEDED for c in declined.compensations)
    assert split.status == SagaStatus.COMPLETED
    assert sorted(split.allocations, key=lambda a: a.region) == [
        Allocation(region="eu-west", sku="SKU-2", quantity=5),
        Allocation(region="us-east", sku="SKU-2", quantity=2),
    ]
    assert (short.status, short.reason) == (SagaStatus.COMPENSATED, Reason.OUT_OF_STOCK)
    assert_invariants(stores, initial, [completed, declined, split, short])
    for saga in (completed, declined, split, short):
        await _assert_every_task_replayed(client, saga)


async def _assert_every_task_replayed(client: Client, saga: SagaState) -> None:
    """No workflow task went to a sticky queue: none found the workflow cached, so each one
    replayed the history from the start."""
    history = await client.get_workflow_handle(workflow_id(saga.order_id)).fetch_history()
    kinds = [
        event.workflow_task_scheduled_event_attributes.task_queue.kind
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    ]
    assert len(kinds) > 1, saga.order_id
    assert set(kinds) == {TaskQueueKind.TASK_QUEUE_KIND_NORMAL}, saga.order_id
