"""The region's hybrid logical clock, kept in its store so every process shares one clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session, select

from regions import locked
from regions.hlc import HybridLogicalClock, Timestamp, wall_ms
from regions.models import ClockState

log = logging.getLogger(__name__)


def tick(session: Session, region: str) -> Timestamp:
    """A timestamp for a local write, inside the writer's transaction (the row is locked)."""
    return _advance(session, region, lambda clock: clock.now())


def observe(session: Session, region: str, remote: Timestamp) -> Timestamp:
    """Moves the clock past a received event's timestamp."""
    return _advance(session, region, lambda clock: clock.observe(remote))


def hold(session: Session, region: str) -> ClockState:
    """The clock's row, locked until the transaction ends. Every write ticks the clock, so this
    is the lock that serialises a region's writers: on PostgreSQL, Store.transaction takes it
    before anything else, so what a writer reads is what the one before it committed."""
    return locked.once_per_transaction(
        session,
        ("clock", region),
        lambda: (
            session.exec(
                select(ClockState).where(ClockState.region == region).with_for_update()
            ).first()
            or ClockState(region=region, wall_ms=0, logical=0)
        ),
    )


def _advance(
    session: Session, region: str, step: Callable[[HybridLogicalClock], Timestamp]
) -> Timestamp:
    state = hold(session, region)
    last = Timestamp(state.wall_ms, state.logical, region) if state.wall_ms else None
    clock = HybridLogicalClock(region, last=last, physical=lambda: physical_ms(region))
    stamp = step(clock)
    state.wall_ms, state.logical = stamp.wall_ms, stamp.logical
    session.add(state)
    return stamp


# Skew, for fault testing only (Settings.clock_skew_dir) ---------------------------------------

# How long an offset read from its file is trusted before the file is looked at again.
RECHECK_SECONDS = 0.1


class SkewFiles:
    """Each region's clock offset in ms, from the file `<directory>/<region>` (missing: 0).

    A file is stat'ed at most every RECHECK_SECONDS and read again only when it changed, so a
    clock read costs nothing most of the time. Writers replace the file whole (rename)."""

    def __init__(self, directory: Path, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # region → (checked at, the file's identity when read, offset)
        self._seen: dict[str, tuple[float, tuple[int, int, int] | None, int]] = {}

    def offset_ms(self, region: str) -> int:
        now = self._monotonic()
        with self._lock:
            seen = self._seen.get(region)
            if seen is not None and now - seen[0] < RECHECK_SECONDS:
                return seen[2]
            path = self.directory / region
            identity = _identity(path)
            if seen is not None and identity == seen[1]:
                offset = seen[2]
            else:
                offset = _read_offset(path) if identity is not None else 0
            self._seen[region] = (now, identity, offset)
            return offset


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _read_offset(path: Path) -> int:
    try:
        text = path.read_text().strip()
        return int(float(text)) if text else 0
    except (OSError, ValueError) as error:
        log.warning("clock skew file %s is unreadable (%s); no skew", path, error)
        return 0


_skew: SkewFiles | None = None


def use_skew(directory: Path | None) -> None:
    """Makes this process's region clocks read their offsets from `directory` (None: none).
    Workers and the API call it once, at start."""
    global _skew
    _skew = SkewFiles(directory) if directory is not None else None


def physical_ms(region: str) -> int:
    """The region's physical clock: wall time, plus its skew when one is configured."""
    skew = _skew
    return wall_ms() + (skew.offset_ms(region) if skew is not None else 0)
