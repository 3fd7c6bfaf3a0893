"""The import contracts in pyproject.toml fail when a lower layer imports a higher one: each
case copies the packages, adds one wrong import, and runs import-linter on the copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES: tuple[str, ...] = (
    "foundation",
    "regions",
    "activities",
    "workflows",
    "orders",
    "worker",
    "api",
)
PACKAGES += ("gateway", "geosaga")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("layers")
    shutil.copy(ROOT / "pyproject.toml", copy)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return copy


def test_the_tree_as_it_is_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)

    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("regions/money.py", "import api.main", "regions.money -> api.main"),
        ("foundation/settings.py", "import regions.catalog", "foundation.settings -> regions"),
        ("activities/noop.py", "import workflows.relay", "activities.noop -> workflows.relay"),
        ("workflows/planner.py", "import orders.sagas", "workflows.planner -> orders.sagas"),
        ("api/metrics.py", "import worker.process", "api.metrics -> worker.process"),
        ("workflows/planner.py", "import httpx", "workflows is not allowed to import httpx"),
        ("gateway/money.py", "import regions.store", "gateway is not allowed to import regions"),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract(
    tree: Path, module: str, line: str, broken: str
) -> None:
    path = tree / module
    original = path.read_text()
    path.write_text(f"{original}\n{line}  # noqa\n")
    try:
        result = lint_imports(tree)
    finally:
        path.write_text(original)

    assert result.returncode == 1, result.stdout
    assert broken in result.stdout
