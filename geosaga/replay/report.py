"""What `geosaga replay` prints: a line per history that replays, a report per one that does not."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from geosaga.replay.histories import Outcome

LABEL_WIDTH = 9


def report(outcomes: Sequence[Outcome], console: Console) -> int:
    """Prints the outcomes; the exit code: 0 when every history replayed, else 1."""
    if not outcomes:
        console.print("[red]no histories to replay[/]: no *.json files in what was given")
        return 1
    for outcome in outcomes:
        if outcome.ok:
            console.print(_ok_line(outcome), soft_wrap=True)
        else:
            _failure(outcome, console)
    failed = sum(not outcome.ok for outcome in outcomes)
    noun = "history" if len(outcomes) == 1 else "histories"
    summary = f"{len(outcomes)} {noun}: {len(outcomes) - failed} OK, {failed} failed"
    console.print(f"[red]{summary}[/]" if failed else f"[green]{summary}[/]", soft_wrap=True)
    return 1 if failed else 0


def _ok_line(outcome: Outcome) -> str:
    return (
        f"[green]OK[/] {escape(outcome.workflow_id or '')} run {escape(outcome.run_id or '')} "
        f"({outcome.events} events) [dim]{escape(outcome.origin)}[/]"
    )


def _failure(outcome: Outcome, console: Console) -> None:
    problem = outcome.problem
    assert problem is not None
    console.print(f"[bold red]FAILED[/] {escape(outcome.origin)}", soft_wrap=True)
    rows = [
        ("kind", problem.kind),
        ("workflow", outcome.workflow_id),
        ("run", outcome.run_id),
        ("mismatch" if problem.kind == "nondeterminism" else "error", problem.message),
        ("at", problem.event),
        ("hint", problem.hint),
    ]
    for label, value in rows:
        if value:
            console.print(f"  [bold]{label:<{LABEL_WIDTH}}[/] {escape(value)}", soft_wrap=True)
