"""The workflow sandbox without a trip into it for every payload, and with bytecode to import.

The one module outside the tests that uses the SDK's private names (`_Definition`, the
runner's instance interface, its loggers' module paths): pyproject.toml pins the SDK's minor
version so a release that moves them fails at install, not in a worker.

For each payload sequence of a workflow task (every command's input, header and summary, every
result) the SDK asks the workflow, inside its sandbox, which serialization context and which
external-storage context the payloads get; each ask runs a snippet of code in the sandbox,
and under load those asks are a large share of a worker's CPU (BENCHMARKS.md). A data
converter that no context can change (no context-aware part, no external storage) encodes the
same whatever the answer, so for such a converter this runner answers without entering the
sandbox. Workflow code itself still runs in the sandbox, with its restrictions.

The sandbox also imports each workflow's module, and the modules of its package that it
imports, afresh for every workflow run. Without a bytecode cache (PYTHONDONTWRITEBYTECODE,
common in containers and set on our machines) every such import compiles the source again, so
workers write the bytecode of those modules.
"""

from __future__ import annotations

import compileall
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    WorkflowSerializationContext,
)
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import Info, _Definition

log = logging.getLogger(__name__)

# The SDK's loggers that print a traceback for every workflow task that fails (a replay's too).
WORKFLOW_TASK_LOGGERS = ("temporalio.worker._workflow", "temporalio.worker._workflow_instance")

_SAMPLE_CONTEXTS: tuple[SerializationContext, ...] = (
    WorkflowSerializationContext(namespace="default", workflow_id="order-1"),
    ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="reserve_stock",
        activity_task_queue="region.us-east",
        workflow_id="order-1",
        workflow_type="OrderSaga",
        is_local=False,
    ),
)


def is_context_free(converter: DataConverter) -> bool:
    """No serialization context changes how `converter` encodes, and it stores nothing
    externally: the SDK's `with_context` hands back the very converter."""
    if converter.external_storage is not None:
        return False
    return all(converter.with_context(context) is converter for context in _SAMPLE_CONTEXTS)


class _ContextFreeInstance(WorkflowInstance):
    """A sandboxed workflow instance that answers the context questions itself."""

    def __init__(self, sandboxed: WorkflowInstance) -> None:
        self._sandboxed = sandboxed

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self._sandboxed.activate(act)

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        return None

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        return StorageDriverStoreContext(target=None)

    def get_info(self) -> Info:
        return self._sandboxed.get_info()

    def get_thread_id(self) -> int | None:
        return self._sandboxed.get_thread_id()


@dataclass(frozen=True)
class ContextFreeSandboxRunner(WorkflowRunner):
    """`sandbox`, for workers whose data converter `is_context_free`."""

    sandbox: SandboxedWorkflowRunner

    def prepare_workflow(self, defn: _Definition) -> None:
        self.sandbox.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextFreeInstance(self.sandbox.create_instance(det))

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.sandbox.set_worker_level_failure_exception_types(types)


def compile_workflow_modules(workflows: Sequence[type]) -> list[str]:
    """Writes the bytecode of the workflows' modules where it is missing or stale; returns
    the modules left without (a read-only install, say), which the sandbox will compile for
    every run."""
    uncompiled = []
    for name in sorted(workflow_modules(workflows)):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path is None or not path.endswith(".py"):
            continue
        if not compileall.compile_file(path, quiet=2):
            uncompiled.append(name)
    if uncompiled:
        log.warning(
            "no bytecode for %s: the workflow sandbox compiles them for every workflow run",
            ", ".join(uncompiled),
        )
    return uncompiled


def workflow_modules(workflows: Sequence[type]) -> set[str]:
    """The workflows' modules and, transitively, the modules of their own package they take
    names from: the sandbox imports each afresh for a run unless it is passed through."""
    found: set[str] = set()
    pending = [workflow.__module__ for workflow in workflows]
    while pending:
        name = pending.pop()
        module = sys.modules.get(name)
        if name in found or module is None:
            continue
        found.add(name)
        package = name.partition(".")[0]
        for value in vars(module).values():
            origin = value.__name__ if isinstance(value, ModuleType) else _module_of(value)
            if origin and origin.partition(".")[0] == package and origin not in found:
                pending.append(origin)
    return found


def _module_of(value: object) -> str | None:
    origin = getattr(value, "__module__", None)
    return origin if isinstance(origin, str) else None


def workflow_type_name(workflow: type) -> str | None:
    """The type name `@workflow.defn` gave `workflow`; None for a dynamic workflow."""
    return _Definition.must_from_class(workflow).name
