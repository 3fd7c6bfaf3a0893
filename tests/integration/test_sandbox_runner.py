"""The workers' workflow runner skips the SDK's per-payload trip into the sandbox only where
the answer cannot matter, and workflow code stays sandboxed (worker/sandbox.py)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)
from temporalio.worker import Worker

from foundation.settings import Settings
from foundation.temporal import data_converter
from tests.integration.sandbox_probe import SandboxProbe, echo
from worker.process import workflow_worker
from worker.sandbox import ContextFreeSandboxRunner, is_context_free


class _PerWorkflowCodec(PayloadCodec, WithSerializationContext):
    """A codec that would encode differently per workflow: contexts matter to it."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    def with_context(self, context: SerializationContext) -> _PerWorkflowCodec:
        return _PerWorkflowCodec()


def _queue() -> str:
    return f"sandbox-runner-{uuid.uuid4().hex[:8]}"


def _runner(client: Client, settings: Settings) -> object:
    return workflow_worker(client, settings).config().get("workflow_runner")


def test_geosaga_converter_is_context_free_and_a_context_aware_one_is_not() -> None:
    ours = data_converter(Settings())
    aware = dataclasses.replace(DataConverter(), payload_codec=_PerWorkflowCodec())

    assert is_context_free(ours)
    assert not is_context_free(aware)


async def test_tuned_workers_use_it_and_stock_ones_do_not(client: Client) -> None:
    tuned = _runner(client, Settings(workflow_task_queue=_queue()))
    stock = _runner(client, Settings(workflow_task_queue=_queue(), worker_tuning=False))

    assert isinstance(tuned, ContextFreeSandboxRunner)
    assert not isinstance(stock, ContextFreeSandboxRunner)


async def test_payloads_round_trip_and_workflow_code_stays_sandboxed(client: Client) -> None:
    queue = _queue()
    # The very runner the region workers use.
    runner = _runner(client, Settings(workflow_task_queue=_queue()))
    assert isinstance(runner, ContextFreeSandboxRunner)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[SandboxProbe],
        activities=[echo],
        workflow_runner=runner,
    ):
        result = await client.execute_workflow(
            SandboxProbe.run, "encrypted", id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue
        )

    assert result == ["ENCRYPTED", "RestrictedWorkflowAccessError"]
