"""A run's report: `report.json` for tools, `report.md` for people."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Report:
    seed: int
    store: str
    minutes: float
    folder: str
    schedule: list[dict[str, Any]]
    # What the nemesis actually did (nemesis.jsonl), by kind.
    faults: dict[str, int] = field(default_factory=dict)
    # Orders per outcome as the harness saw them at the end, and as the checker did.
    outcomes: dict[str, int] = field(default_factory=dict)
    audit_outcomes: dict[str, int] = field(default_factory=dict)
    # Requests per answer status ("lost": no answer), API and elsewhere.
    requests: dict[str, int] = field(default_factory=dict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    # The harness's own troubles (a fault it could not carry out), not the service's.
    problems: list[str] = field(default_factory=list)
    settled_after_seconds: float | None = None
    # How long each part of the run took: start, load, heal, quiesce, check.
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def faults_by_kind(done: list[dict[str, Any]]) -> dict[str, int]:
    counted = Counter(str(entry["kind"]) for entry in done if "left out" not in entry["note"])
    return dict(sorted(counted.items()))


def write(report: Report, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
    (folder / "report.md").write_text(markdown(report))


def markdown(report: Report) -> str:
    verdict = "no violations" if report.ok else f"{len(report.violations)} violations"
    settled = (
        f"settled {report.settled_after_seconds:.0f} s after the load stopped"
        if report.settled_after_seconds is not None
        else "did not settle before the deadline"
    )
    lines = [
        f"# geosaga torture: seed {report.seed}, {report.store}, {report.minutes} min",
        "",
        f"**{verdict}**; {settled}; {report.seconds:.0f} s in all. Replay: "
        f"`geosaga torture --seed {report.seed} --minutes {report.minutes} "
        f"--store {report.store}`.",
        "",
        "## Violations",
        "",
    ]
    lines += [
        f"- **{v['rule']}**: {v['detail']}"
        + (f" (orders: {', '.join(v['orders'])})" if v.get("orders") else "")
        + (f" (where: {', '.join(v['where'])})" if v.get("where") else "")
        for v in report.violations
    ] or ["None."]
    lines += ["", "## Outcomes", "", *_table(report.outcomes, "outcome", "orders")]
    if report.audit_outcomes:
        lines += [
            "",
            "As the checker counts them:",
            "",
            *_table(report.audit_outcomes, "outcome", "orders"),
        ]
    lines += ["", "## Requests by answer", "", *_table(report.requests, "answer", "requests")]
    lines += ["", "## Faults injected", "", *_table(report.faults, "kind", "times")]
    lines += ["", "## The schedule", "", "| at (s) | kind | target | duration (s) | params |"]
    lines += ["| ---: | --- | --- | ---: | --- |"]
    lines += [
        f"| {f['at']} | {f['kind']} | {f['target']} | {f['duration']} | "
        f"{json.dumps(f['params']) if f['params'] else ''} |"
        for f in report.schedule
    ]
    lines += ["", "## Time", "", *_table(report.phases, "phase", "seconds")]
    if report.problems:
        lines += ["", "## Harness problems", "", *(f"- {problem}" for problem in report.problems)]
    return "\n".join(lines) + "\n"


def _table(counts: dict[str, int] | dict[str, float], name: str, unit: str) -> list[str]:
    if not counts:
        return ["None."]
    return [
        f"| {name} | {unit} |",
        "| --- | ---: |",
        *(f"| {k} | {v} |" for k, v in counts.items()),
    ]
