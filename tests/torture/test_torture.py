"""The short torture `make test` runs: `geosaga torture` in-process, a fixed seed per store,
24 s of load and faults each. Any violation fails the test with the whole report."""

from __future__ import annotations

from pathlib import Path

import pytest

from geosaga.torture.report import Report, markdown
from geosaga.torture.run import run
from geosaga.torture.schedule import Store

pytestmark = pytest.mark.torture

MINUTES = 0.4
# Seeds whose schedules of that length hold six and seven kinds of fault.
SEEDS: dict[Store, int] = {"sqlite": 44, "postgres": 19}


def _said(report: Report) -> str:
    return f"\ngeosaga torture --seed {report.seed} --store {report.store}\n{markdown(report)}"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_a_short_torture_breaks_no_promise(store: Store, tmp_path: Path) -> None:
    report = await run(SEEDS[store], MINUTES, store, tmp_path / "run")
    print(_said(report))  # shown by pytest when the test fails

    assert report.settled_after_seconds is not None, _said(report)
    assert len(report.faults) >= 4, _said(report)
    assert report.outcomes.get("completed", 0) > 0, _said(report)
    compensated = {k for k, n in report.outcomes.items() if k.startswith("compensated") and n}
    assert len(compensated) >= 2, _said(report)
    assert report.violations == [], _said(report)
    assert (tmp_path / "run" / "report.md").read_text() == markdown(report)
