"""Workers write the bytecode of their workflows' modules, which the sandbox imports afresh for
every workflow run; without it each import compiles the source (worker/sandbox.py)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from worker.sandbox import compile_workflow_modules


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


def test_modules_with_no_source_file_are_left_alone() -> None:
    assert compile_workflow_modules([int]) == []
