"""Workers write the bytecode of their workflows' modules, which the sandbox imports afresh for
every workflow run; without it each import compiles the source (worker/sandbox.py)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from worker.sandbox import compile_workflow_modules, workflow_modules
from workflows.floor import Floor
from workflows.order_saga import OrderSaga
from workflows.relay import Relay


def test_a_workflow_module_without_bytecode_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "probe_workflows.py").write_text("class Probe:\n    pass\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Forgotten again once the test ends.
    monkeypatch.delitem(sys.modules, "probe_workflows", raising=False)
    module = importlib.import_module("probe_workflows")
    cached = Path(importlib.util.cache_from_source(str(module.__file__)))
    assert not cached.exists()

    left = compile_workflow_modules([module.Probe])

    assert left == []
    assert cached.exists()


def test_the_modules_a_workflow_module_imports_from_its_package_get_it_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "probe_saga"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text("def step() -> int:\n    return 1\n")
    (package / "saga.py").write_text("from probe_saga.steps import step\n\nclass Saga:\n    pass\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("probe_saga", "probe_saga.steps", "probe_saga.saga"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("probe_saga.saga")
    steps = package / "steps.py"

    left = compile_workflow_modules([module.Saga])

    assert left == []
    assert Path(importlib.util.cache_from_source(str(steps))).exists()


def test_the_workers_workflows_bring_their_helper_modules() -> None:
    modules = workflow_modules([OrderSaga, Relay, Floor])

    helpers = {"allocation", "payment", "saga_steps", "compensation_rounds"}
    assert {f"workflows.{name}" for name in helpers} <= modules


def test_modules_with_no_source_file_are_left_alone() -> None:
    assert compile_workflow_modules([int]) == []
