"""Checks the commands share: a refusal is one red line and exit 2, as for a bad option."""

from __future__ import annotations

import typer
from rich.console import Console

from foundation.settings import Settings

console = Console()


def require_region(settings: Settings, region: str) -> None:
    """Ends the command when `region` is not one of the settings' regions."""
    if region not in settings.regions:
        console.print(f"[red]unknown region {region!r}; known: {', '.join(settings.regions)}")
        raise typer.Exit(2)
