"""The saga's stock: which regions it comes from, holding it, committing it, releasing it.

Planning asks the home region first and the others only when the home region falls short;
every reservation registers its release before it runs, one group for the regions reserved
in parallel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.compensation_rounds import CompensationRounds
from workflows.saga_steps import Rollback, SagaSteps, failure_message, is_cancellation

with workflow.unsafe.imports_passed_through():
    from activities.contract import (
        ActivityName,
        ReservationKey,
        ReserveStock,
        StepOutcome,
        StockAvailability,
        StockCheck,
    )
    from regions.values import Allocation, Reason, ReservationStatus, SagaStatus, StockLine
    from workflows.compensation import Compensation, CompensationStack
    from workflows.contract import (
        SAGA_REGIONS,
        OrderInput,
        SagaState,
    )
    from workflows.planner import InsufficientStock, plan_allocation, regions_in
    from workflows.trace import describe_lines

# A change to a released code path, behind workflow.patched so older histories replay.
# The home region's replicated stock view keeps regions with none of the SKUs out of planning.
PATCH_STOCK_VIEW = "stock-view-planning"


class StockAllocation:
    """One order's stock across regions, as saga steps."""

    def __init__(
        self,
        order: OrderInput,
        state: SagaState,
        steps: SagaSteps,
        undo: CompensationStack,
        rounds: CompensationRounds,
        cancel_requested: Callable[[], bool],
    ) -> None:
        self._order = order
        self._state = state
        self._steps = steps
        self._undo = undo
        self._rounds = rounds
        self._cancel_requested = cancel_requested

    async def plan(self) -> list[Allocation]:
        order = self._order
        demands = [StockLine(sku=line.sku, quantity=line.quantity) for line in order.lines]
        availability: dict[str, dict[str, int]] = {}
        home = await self._check_stock(order.home_region)
        if home is not None:
            availability[order.home_region] = home.available
        others = [region for region in order.regions if region != order.home_region]
        skipped: list[str] = []
        if home is not None and workflow.patched(PATCH_STOCK_VIEW):
            # Data locality: leave out regions whose replicated stock has none of these SKUs.
            skipped = [r for r in others if _has_none(home.elsewhere.get(r), demands)]
            others = [r for r in others if r not in skipped]
        if home is None or any(home.available.get(d.sku, 0) < d.quantity for d in demands):
            levels = await asyncio.gather(*(self._check_stock(region) for region in others))
            availability.update(
                {r: found.available for r, found in zip(others, levels, strict=True) if found}
            )
        try:
            picks = plan_allocation(demands, order.home_region, availability, list(order.regions))
        except InsufficientStock as short:
            silent = [r for r in order.regions if r not in availability and r not in skipped]
            notes = [f"no answer from {', '.join(silent)}"] if silent else []
            if skipped:
                notes.append(f"none replicated from {', '.join(skipped)}")
            note = f" ({'; '.join(notes)})" if notes else ""
            raise Rollback(Reason.OUT_OF_STOCK, f"{short}{note}") from short
        self._state.allocations = picks
        workflow.upsert_search_attributes([SAGA_REGIONS.value_set(regions_in(picks))])
        self._steps.publish()
        return picks

    async def reserve(self, picks: list[Allocation]) -> None:
        by_region: dict[str, list[StockLine]] = {}
        for pick in picks:
            by_region.setdefault(pick.region, []).append(
                StockLine(sku=pick.sku, quantity=pick.quantity)
            )
        self._undo.push_group(
            [
                Compensation(f"release in {region}", partial(self._release, region, lines))
                for region, lines in by_region.items()
            ]
        )
        results = await asyncio.gather(
            *(self._reserve_in(region, lines) for region, lines in by_region.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise Rollback.after(
                    result, Reason.OUT_OF_STOCK, cancelled=self._cancel_requested()
                ) from result
        undone = [
            r for r in results if isinstance(r, StepOutcome) and r.status != ReservationStatus.HELD
        ]
        if undone:
            # Only a rerun of this order sees this: an earlier run released the reservation.
            raise Rollback(Reason.CANCELLED, f"reservation in {undone[0].region} was undone")

    async def commit(self) -> None:
        regions = regions_in(self._state.allocations)
        results = await asyncio.gather(
            *(self._commit_in(region) for region in regions), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            # Payment is captured, so there is no going back: a person must look at it.
            self._state.message = f"commit failed after capture: {failure_message(failed[0])}"
            self._steps.set_status(SagaStatus.NEEDS_ATTENTION)

    async def _check_stock(self, region: str) -> StockAvailability | None:
        """A region's available units (and its view of the others), or None if it is silent."""
        try:
            return await self._steps.run(
                "check_stock",
                region,
                "available units",
                ActivityName.CHECK_STOCK,
                StockCheck(skus=[line.sku for line in self._order.lines]),
                summary=f"check stock in {region}",
                result_type=StockAvailability,
                # A silent region must not hold planning up: one deadline for all attempts.
                per_attempt_limit=False,
                schedule_to_close=timedelta(seconds=self._order.options.allocation_timeout_seconds),
            )
        except ActivityError as error:
            if self._cancel_requested() or is_cancellation(error):
                raise
            return None

    async def _reserve_in(self, region: str, lines: list[StockLine]) -> StepOutcome:
        allocation = self._order.options.allocation_timeout_seconds
        return await self._steps.run(
            "reserve",
            region,
            describe_lines(lines),
            ActivityName.RESERVE_STOCK,
            ReserveStock(key=self._reservation(region), order_id=self._order.order_id, lines=lines),
            summary=f"reserve {describe_lines(lines)} in {region}",
            schedule_to_close=timedelta(seconds=3 * allocation),
        )

    async def _commit_in(self, region: str) -> StepOutcome:
        lines = [
            StockLine(sku=a.sku, quantity=a.quantity)
            for a in self._state.allocations
            if a.region == region
        ]
        return await self._steps.run(
            "commit",
            region,
            describe_lines(lines),
            ActivityName.COMMIT_STOCK,
            ReservationKey(key=self._reservation(region), order_id=self._order.order_id),
            summary=f"commit {describe_lines(lines)} in {region}",
        )

    async def _release(self, region: str, lines: list[StockLine]) -> None:
        await self._rounds.run(
            "release",
            region,
            describe_lines(lines),
            ActivityName.RELEASE_STOCK,
            ReservationKey(key=self._reservation(region), order_id=self._order.order_id),
            f"compensate: release {describe_lines(lines)} in {region}",
        )

    def _reservation(self, region: str) -> str:
        """One key for a region's reservation: reserving, committing and releasing it."""
        return self._steps.key("reserve", region)


def _has_none(levels: dict[str, int] | None, demands: list[StockLine]) -> bool:
    """The view knows this region and it has none of any demanded SKU."""
    return levels is not None and all(levels.get(d.sku, 0) <= 0 for d in demands)
