"""Replaying saga histories against the current workflow code (`geosaga replay`).

A history comes from a JSON file (`temporal workflow show -o json`, the Web UI's Download, the
corpus in tests/histories/) or from the server by workflow id. Every history is replayed with
the workers' data converter; one that does not replay gets a `Problem` naming what did not
match, taken from the replay failure's own message, and what to do about it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from google.protobuf.json_format import ParseError
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from foundation.codec import EncryptionCodec
from foundation.settings import Settings
from foundation.temporal import connect, data_converter
from geosaga.replay.events import describe_event, only_scheduled
from worker.sandbox import WORKFLOW_TASK_LOGGERS, workflow_type_name
from workflows.contract import workflow_id as saga_workflow_id
from workflows.order_saga import OrderSaga

NONDETERMINISM_HINT = (
    "a change to the saga's code path needs workflow.patched; "
    'see README, "Replaying and re-recording histories"'
)
FAILURE_HINT = "the workflow code failed while replaying this history; is it an OrderSaga's?"
OTHER_WORKFLOW_HINT = "give it the history of an OrderSaga"
UNREADABLE_HINT = (
    "expected the JSON of `temporal workflow show -o json` or of the Web UI's Download "
    "(payloads not decoded)"
)
NOT_FOUND_HINT = "give a workflow id (order-<order id>, as in the Web UI) or an order id"
UNAVAILABLE_HINT = "check GEOSAGA_TEMPORAL_ADDRESS, GEOSAGA_TEMPORAL_NAMESPACE and the workflow id"

# Core reports a failed workflow task as a Rust debug dump; its `message: "..."` is the news.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")
_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)")
_SCHEDULED_TYPE = re.compile(r"scheduled event '([^']+)'")


@dataclass(frozen=True)
class Problem:
    kind: str  # nondeterminism, replay failed, other workflow, unreadable, unavailable, not found
    message: str
    hint: str
    event: str | None = None


@dataclass(frozen=True)
class Source:
    """A history, or why there is none, and where it came from (a file or the server)."""

    origin: str
    history: WorkflowHistory | None = None
    problem: Problem | None = None


@dataclass(frozen=True)
class Outcome:
    origin: str
    workflow_id: str | None
    run_id: str | None
    events: int
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def replay_all(
    paths: Sequence[Path],
    workflow_ids: Sequence[str] = (),
    settings: Settings | None = None,
    workflows: Sequence[type] = (OrderSaga,),
) -> list[Outcome]:
    """What `geosaga replay` does: files (directories recursively), then server histories."""
    sources = [read_history(path) for path in history_files(paths)]
    settings = settings or Settings()
    if workflow_ids:
        sources += await fetch_histories(settings, workflow_ids)
    return await replay(sources, workflows, settings)


def history_files(paths: Iterable[Path]) -> list[Path]:
    """The files as given; a directory stands for every *.json under it, subfolders included."""
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.rglob("*.json") if p.is_file()) if path.is_dir() else [path]
    return found


def read_history(path: Path) -> Source:
    """A JSON history: `WorkflowHistory.to_json`, `temporal workflow show -o json`, the UI's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object with `events`")
        history = WorkflowHistory.from_json(path.stem, data)
    except (OSError, ValueError, TypeError, AttributeError, ParseError) as error:
        return _unreadable(path, f"cannot read a history: {error}")
    if not history.events or not history.events[0].HasField(
        "workflow_execution_started_event_attributes"
    ):
        return _unreadable(path, "the history does not begin with WorkflowExecutionStarted")
    started = history.events[0].workflow_execution_started_event_attributes
    if any(not payload.metadata.get("encoding") for payload in started.input.payloads):
        return _unreadable(path, "the workflow input has no encoding: its payloads were decoded")
    if started.workflow_id:
        history = WorkflowHistory(started.workflow_id, history.events)
    return Source(str(path), history)


def _unreadable(path: Path, message: str) -> Source:
    return Source(str(path), problem=Problem("unreadable", message, UNREADABLE_HINT))


async def fetch_histories(settings: Settings, workflow_ids: Sequence[str]) -> list[Source]:
    """The latest run of each workflow id, from the configured Temporal server."""
    origin = f"server {settings.temporal_address}"
    try:
        client = await connect(settings)
    except (RuntimeError, RPCError) as error:
        problem = Problem("unavailable", str(error), UNAVAILABLE_HINT)
        return [Source(f"{origin}, {workflow_id}", problem=problem) for workflow_id in workflow_ids]
    return [await _fetch(client, origin, workflow_id) for workflow_id in workflow_ids]


async def _fetch(client: Client, origin: str, workflow_id: str) -> Source:
    # The id as given first (a workflow id from the Web UI), then as an order id (`retry`'s).
    for candidate in (workflow_id, saga_workflow_id(workflow_id)):
        try:
            history = await client.get_workflow_handle(candidate).fetch_history()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                continue
            problem = Problem("unavailable", str(error), UNAVAILABLE_HINT)
            return Source(f"{origin}, {workflow_id}", problem=problem)
        return Source(origin, history)
    problem = Problem("not found", f"no saga {workflow_id} on this server", NOT_FOUND_HINT)
    return Source(f"{origin}, {workflow_id}", problem=problem)


async def replay(
    sources: Sequence[Source],
    workflows: Sequence[type] = (OrderSaga,),
    settings: Settings | None = None,
) -> list[Outcome]:
    """Replays every history against `workflows`: one outcome per source, in order.

    Payloads are decoded with the payload keys of `settings` (default: from the environment);
    histories recorded without encryption replay as they are.
    """
    # A dynamic workflow (no name) takes any type.
    names = {workflow_type_name(workflow) for workflow in workflows}
    checked = [_check_type(source, names) for source in sources]
    histories = [s.history for s in checked if s.history is not None and s.problem is None]
    converter = data_converter(settings or Settings(), encode_failures=False)
    failures = iter(await _replay(histories, workflows, converter) if histories else [])
    outcomes: list[Outcome] = []
    for source in checked:
        history, problem = source.history, source.problem
        if history is None:
            outcomes.append(Outcome(source.origin, None, None, 0, problem))
            continue
        if problem is None and (failure := next(failures)) is not None:
            problem = diagnose(failure, history, converter.payload_codec)
        outcomes.append(
            Outcome(
                source.origin, history.workflow_id, history.run_id, len(history.events), problem
            )
        )
    return outcomes


def _check_type(source: Source, names: set[str | None]) -> Source:
    """A history of another workflow type is no test of these workflows, even if it "replays"."""
    if source.history is None or source.problem is not None:
        return source
    started = source.history.events[0].workflow_execution_started_event_attributes
    if started.workflow_type.name in names or None in names:
        return source
    known = ", ".join(sorted(name for name in names if name))
    message = f"workflow type {started.workflow_type.name}; this replays {known} only"
    problem = Problem("other workflow", message, OTHER_WORKFLOW_HINT)
    return Source(source.origin, source.history, problem)


async def _replay(
    histories: list[WorkflowHistory], workflows: Sequence[type], converter: DataConverter
) -> list[Exception | None]:
    replayer = Replayer(workflows=list(workflows), data_converter=converter, runtime=_runtime())

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    failures: list[Exception | None] = []
    with _quiet({history.run_id for history in histories}):
        async with replayer.workflow_replay_iterator(each()) as results:
            async for result in results:
                failures.append(result.replay_failure)
    return failures


def diagnose(
    failure: Exception, history: WorkflowHistory, codec: PayloadCodec | None = None
) -> Problem:
    """The replay failure's own message, and the event it names when it names one."""
    decrypt = codec.decrypt if isinstance(codec, EncryptionCodec) else None
    text = str(failure)
    found = _CORE_MESSAGE.search(text)
    message = _ESCAPE.sub(r"\1", found.group(1)) if found else text
    event = None
    if named := _EVENT_ID.search(message):
        event = describe_event(history.events, int(named.group(1)), decrypt)
    elif scheduled := _SCHEDULED_TYPE.search(message):
        # "Activity type of scheduled event 'x' does not match ...": certain when x is unique.
        event_id = only_scheduled(history.events, scheduled.group(1))
        event = None if event_id is None else describe_event(history.events, event_id, decrypt)
    if isinstance(failure, NondeterminismError):
        return Problem("nondeterminism", message, NONDETERMINISM_HINT, event)
    return Problem("replay failed", message, FAILURE_HINT, event)


@cache
def _runtime() -> Runtime:
    """A runtime whose core logs errors only: a failed replay is reported, not logged."""
    errors_only = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(
        telemetry=TelemetryConfig(logging=LoggingConfig(filter=errors_only), metrics=None)
    )


@contextmanager
def _quiet(run_ids: set[str]) -> Iterator[None]:
    """Drops the SDK's tracebacks about the runs being replayed; other workflows still log."""

    def keep(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(run_id in message for run_id in run_ids)

    loggers = [logging.getLogger(name) for name in WORKFLOW_TASK_LOGGERS]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(keep)
