"""Operator commands: sagas that need attention, and reruns of failed ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from foundation.settings import Settings
from foundation.temporal import connect, temporal_unreachable
from geosaga.checks import require_region
from regions.store import Store
from workflows.contract import WORKFLOW_ID_PREFIX

T = TypeVar("T")

_ORDER = "An order id, or its saga's workflow id (order-<order id>)"
attention = typer.Typer(help="Sagas whose compensation is stuck and waits for a person.")
console = Console()


def _run(action: Callable[[Client, Settings], Awaitable[T]]) -> T:
    """Runs `action` with a client; Temporal out of reach ends the command in one line."""
    settings = Settings()

    async def main() -> T:
        return await action(await connect(settings), settings)

    try:
        return asyncio.run(main())
    except (RuntimeError, RPCError) as error:
        if not temporal_unreachable(error):
            raise
        console.print(
            f"[red]Temporal is unreachable at {settings.temporal_address}[/] (is `make run` "
            "running? GEOSAGA_TEMPORAL_ADDRESS says where)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


async def _as_order(given: str, action: Callable[[str], Awaitable[T]]) -> T:
    """Runs `action` on the order `given` names: an order id, or its saga's workflow id
    (`order-<order id>`, as `replay` and the Web UI show it).

    The id as given comes first, since an order id may itself start with `order-`; only when
    no such order exists is the prefix taken off. `action` must raise OrderNotFound before
    doing anything, as the orders client does.
    """
    from orders.errors import OrderNotFound

    stripped = given.removeprefix(WORKFLOW_ID_PREFIX)
    if stripped != given:
        try:
            return await action(given)
        except OrderNotFound:
            pass
    try:
        return await action(stripped)
    except OrderNotFound:
        raise OrderNotFound(f"no order {given}") from None


def _show(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], empty: str) -> None:
    """A table for people; piped, one tab-separated line per row for scripts (`| cut -f1`)."""
    if not console.is_terminal:
        for row in rows:
            console.out("\t".join(row), highlight=False)
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    console.print(table if rows else empty)


def _refusals(order: str, action: Callable[[Client, str], Awaitable[str]]) -> None:
    from orders.errors import NotAnswered, OrderNotFound, Refused

    try:
        console.print(_run(lambda client, _: _as_order(order, lambda found: action(client, found))))
    except OrderNotFound as missing:
        console.print(f"[red]{missing}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (Refused, NotAnswered) as refused:
        console.print(f"[red]{type(refused).__name__}: {refused}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@attention.command("list")
def list_stuck(
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
) -> None:
    """List the sagas in needs_attention, from Temporal visibility."""
    from orders.sagas import search
    from regions.values import SagaStatus

    found = _run(
        lambda client, settings: search(
            client,
            settings,
            status=SagaStatus.NEEDS_ATTENTION,
            region=None,
            customer=None,
            limit=limit,
        )
    )
    rows = [
        (
            order.order_id,
            order.customer_id or "",
            order.home_region or "",
            ",".join(order.regions),
            f"{order.started_at:%Y-%m-%d %H:%M:%S}" if order.started_at else "",
            order.links.ui,
        )
        for order in found
    ]
    _show(
        ("order", "customer", "home", "regions", "started", "Web UI"),
        rows,
        "no saga needs attention",
    )


@attention.command("retry")
def retry_now(
    order_id: Annotated[str, typer.Argument(help=_ORDER)],
    by: Annotated[str, typer.Option(help="Who asks")] = "cli",
) -> None:
    """Start the next round of a saga's stuck compensations now."""
    from orders.operations import retry_compensation

    _refusals(order_id, lambda client, found: retry_compensation(client, found, by))


@attention.command("resolve")
def resolve(
    order_id: Annotated[str, typer.Argument(help=_ORDER)],
    by: Annotated[str, typer.Option(help="Who resolved it")],
    why: Annotated[str, typer.Option(help="What was done by hand, and why")],
) -> None:
    """Record that the stuck compensations were done by hand; the saga ends compensated."""
    from orders.operations import resolve as resolve_saga

    _refusals(order_id, lambda client, found: resolve_saga(client, found, by, why))


def rerun(
    order_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Orders to rerun: order ids or workflow ids (order-<order id>)"),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help='A visibility query, e.g. ExecutionStatus="Terminated"'),
    ] = None,
) -> None:
    """Rerun failed or terminated sagas: reset to the last good point, or start afresh."""
    from orders.errors import OrderNotFound, Refused
    from orders.operations import rerun as rerun_saga
    from workflows.contract import WORKFLOW_NAME

    async def main(client: Client, settings: Settings) -> int:
        targets = list(order_ids or [])
        if query:
            wanted = f"WorkflowType = '{WORKFLOW_NAME}' AND ({query})"
            async for execution in client.list_workflows(wanted):
                targets.append(execution.id.removeprefix(WORKFLOW_ID_PREFIX))
        failures = 0
        for order_id in dict.fromkeys(targets):
            try:
                done = await _as_order(
                    order_id,
                    lambda found: rerun_saga(client, settings, found, reason="geosaga retry"),
                )
            except OrderNotFound as missing:
                failures += 1
                console.print(f"[red]{missing}", highlight=False, soft_wrap=True)
                continue
            except Refused as refused:
                failures += 1
                console.print(f"[yellow]{order_id}: {refused}", highlight=False, soft_wrap=True)
                continue
            console.print(f"{order_id}: {done.action}, new run {done.run_id}")
        if not targets:
            console.print("nothing to rerun")
        return failures

    if _run(main):
        raise typer.Exit(1)


dead_letters = typer.Typer(help="Events a region could not apply after every attempt.")


def _store(region: str) -> Store:
    settings = Settings()
    require_region(settings, region)
    return Store(region, settings.database_url(region))


@dead_letters.command("list")
def list_dead_letters(region: str) -> None:
    """List a region's dead letters."""
    from regions.replication import dead_letters as letters_of

    letters = letters_of(_store(region))
    rows = [
        (
            letter.event_id,
            letter.source_region,
            letter.event_type,
            f"{letter.aggregate_type}:{letter.aggregate_id}",
            str(letter.attempts),
            letter.error,
        )
        for letter in letters
    ]
    _show(
        ("event", "from", "type", "aggregate", "attempts", "error"),
        rows,
        f"no dead letters in {region}",
    )


@dead_letters.command("redrive")
def redrive(region: str, event_id: str) -> None:
    """Apply a dead-lettered event again, once what broke it is fixed."""
    from regions.replication import redrive as redrive_letter

    store = _store(region)  # an unknown region is its own one line
    try:
        found = redrive_letter(store, event_id)
    except Exception as failure:
        console.print(f"[red]still cannot apply it: {failure}")
        raise typer.Exit(1) from None
    if not found:
        console.print(f"[red]no dead letter {event_id} in {region}")
        raise typer.Exit(1)
    console.print(f"applied {event_id} in {region}")
