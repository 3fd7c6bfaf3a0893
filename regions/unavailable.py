"""When a region's store cannot serve: the error the API answers 503 with, which failures are
the store's rather than the work's, and the retries a killed connection deserves."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

P = ParamSpec("P")
T = TypeVar("T")


class StoreUnavailable(Exception):
    """A region's store could not be reached, or kept a request waiting past its timeout.

    `disconnected`: the connection died under the transaction (the server rolled it back, or
    committed it if it died during COMMIT), and a fresh one may well work.
    """

    def __init__(self, region: str, reason: str, *, disconnected: bool = False) -> None:
        super().__init__(f"the {region} store is unavailable: {reason}")
        self.region = region
        self.disconnected = disconnected


# After a killed connection: try again at once, then after these pauses (seconds): long
# enough in all to outlast a few seconds of backends being terminated, as in a failover.
RECONNECT_PAUSES = (0.0, 0.1, 0.3, 0.6, 1.0, 1.5)


def retried_if_disconnected(call: Callable[P, T]) -> Callable[P, T]:
    """Runs `call` again when its connection died under it, a few times, briefly.

    pool_pre_ping tests a connection only as it leaves the pool; one killed afterwards (a
    backend terminated, a failover) fails the transaction it was in, which the server rolled
    back, so another try on a fresh connection is the answer the caller wanted. A server
    terminating backends over and over (a failover, an operator's script, `geosaga torture`)
    can kill every try for seconds; tries spread over three and a half seconds ride that out.
    Only calls that are right to run twice may use this: a connection that died during COMMIT
    leaves it unknown whether the try committed. A store that times out, or keeps failing, is
    down: StoreUnavailable.
    """

    @functools.wraps(call)
    def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        for pause in RECONNECT_PAUSES:
            try:
                return call(*args, **kwargs)
            except StoreUnavailable as unavailable:
                if not unavailable.disconnected:
                    raise
            time.sleep(pause)
        return call(*args, **kwargs)

    return retried


def store_failure(error: BaseException) -> bool:
    """The store failed under the work (unreachable, its connection lost, a wait past the
    timeout), rather than the work itself: no fault of the data being written."""
    return isinstance(error, OperationalError | InterfaceError | PoolTimeout) or _disconnected(
        error
    )


def unavailable(region: str, error: BaseException) -> StoreUnavailable:
    """What a store failure is reported as: the driver's own words, first line only (no SQL,
    no parameters)."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    lines = str(cause).strip().splitlines()
    said = lines[0] if lines else type(cause).__name__
    return StoreUnavailable(region, said, disconnected=_disconnected(error))


def _disconnected(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and error.connection_invalidated
