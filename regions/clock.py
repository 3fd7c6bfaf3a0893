"""The region's hybrid logical clock, kept in its store so every process shares one clock."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, select

from regions import locked
from regions.hlc import HybridLogicalClock, Timestamp
from regions.models import ClockState


def tick(session: Session, region: str) -> Timestamp:
    """A timestamp for a local write, inside the writer's transaction (the row is locked)."""
    return _advance(session, region, lambda clock: clock.now())


def observe(session: Session, region: str, remote: Timestamp) -> Timestamp:
    """Moves the clock past a received event's timestamp."""
    return _advance(session, region, lambda clock: clock.observe(remote))


def _advance(
    session: Session, region: str, step: Callable[[HybridLogicalClock], Timestamp]
) -> Timestamp:
    state = locked.once_per_transaction(
        session,
        ("clock", region),
        lambda: (
            session.exec(
                select(ClockState).where(ClockState.region == region).with_for_update()
            ).first()
            or ClockState(region=region, wall_ms=0, logical=0)
        ),
    )
    last = Timestamp(state.wall_ms, state.logical, region) if state.wall_ms else None
    clock = HybridLogicalClock(region, last=last)
    stamp = step(clock)
    state.wall_ms, state.logical = stamp.wall_ms, stamp.logical
    session.add(state)
    return stamp
